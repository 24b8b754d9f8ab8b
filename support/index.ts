// The test-support layer in one import, for the tests, the bench and the demo: processes and
// temp dirs (process.ts), redis-server and its client (redis.ts), Haraka instances (haraka.ts),
// the loopback sink (sink.ts), the SMTP client (smtp.ts), fakeStore (fake-store.ts) and a TCP proxy
// that can cut connections (tcp-proxy.ts).
// support/plugin.ts is imported on its own: loading haraka-test-fixtures changes globals.

export * from './process'
export * from './redis'
export * from './haraka'
export * from './sink'
export * from './smtp'
export * from './fake-store'
export * from './random'
export * from './tcp-proxy'
export * from './webhook-receiver'
