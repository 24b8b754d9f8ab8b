// The store's client speaks RESP3 (lib/store/redis/connection.ts); the Lua scripts were written
// against RESP2 replies. Each script, run step by step on a real redis-server for one account over
// RESP2 and for a twin account over RESP3, must give its decoder replies of the same shape, and the
// same decoded results.

import * as assert from 'node:assert/strict'
import { createClient } from 'redis'

import { DISABLE, DROP_HELD, ENABLE, REASSERT, RECORD, REDEEM, SCRIPTS } from '../../lib/store/redis/scripts'
import type { Script, ScriptCall } from '../../lib/store/redis/scripts'
import { HOST } from '../../support/process'
import { recordInput, rules, summary } from './contract'
import { redisServerHooks } from './redis-store'

/** The JSON types of a reply, recursively: what a decoder sees apart from the values. */
function shape(reply: unknown): unknown {
  if (Array.isArray(reply)) return reply.map(shape)
  if (reply === null) return 'null'
  if (typeof reply === 'object') return Object.fromEntries(Object.entries(reply).map(([k, v]) => [k, shape(v)]))
  return typeof reply
}

/** What differs between twins by design: clock readings, random ids and tokens. */
const VARYING = new Set(['at', 'incident', 'token_sha256', 'token_expires', 'tokenExpiresAt'])

/** A decoded result with the account's name replaced and the VARYING fields dropped, for comparing twins. */
function comparable(value: unknown, account: string): unknown {
  return JSON.parse(JSON.stringify(value ?? null).replaceAll(account, 'ACCOUNT'), (key, v: unknown) =>
    VARYING.has(key) ? undefined : v,
  ) as unknown
}

describe('redis store: script replies under RESP2 and RESP3', function () {
  const db = redisServerHooks()

  it('no script switches the protocol of its own replies (redis.setresp)', function () {
    for (const s of SCRIPTS) assert.doesNotMatch(s.source, /setresp/, s.name)
  })

  it('every script gives its decoder the same shapes and results over RESP2 and RESP3', async function () {
    const clients = {
      2: createClient({ RESP: 2, socket: { host: HOST, port: db.server.port } }),
      3: createClient({ RESP: 3, socket: { host: HOST, port: db.server.port } }),
    }
    await Promise.all(Object.values(clients).map((c) => c.connect()))
    try {
      const run = (resp: 2 | 3, script: Script, { keys, args }: ScriptCall): Promise<unknown> =>
        clients[resp].eval(script.source, { keys, arguments: args })
      const r = rules({ messages: '1/1h' })
      const inputs = new Map<string, ReturnType<typeof recordInput>>()
      const input = (account: string, n: number): ReturnType<typeof recordInput> => {
        const key = `${account}#${n}`
        const made = inputs.get(key) ?? recordInput(account, r, { summary: summary(n) })
        inputs.set(key, made)
        return made
      }
      // Each step: the call for an account, and how its reply decodes.
      const steps: [string, Script, (account: string) => ScriptCall, (reply: unknown, account: string) => unknown][] = [
        ['record (ok)', RECORD, (a) => RECORD.encode(input(a, 1)), (x, a) => RECORD.decode(x, input(a, 1))],
        ['record (refused)', RECORD, (a) => RECORD.encode(input(a, 2)), (x, a) => RECORD.decode(x, input(a, 2))],
        ['record (disabled)', RECORD, (a) => RECORD.encode(input(a, 3)), (x, a) => RECORD.decode(x, input(a, 3))],
        [
          'reassert (present)',
          REASSERT,
          (a) => REASSERT.encode(a, { incident: 'old', at: '1' }),
          (x) => REASSERT.decode(x),
        ],
        ['redeem (mismatch)', REDEEM, (a) => REDEEM.encode(a, 'f'.repeat(32)), (x) => REDEEM.decode(x)],
        ['drop-held', DROP_HELD, (a) => DROP_HELD.encode(a, 60_000), (x) => DROP_HELD.decode(x)],
        ['enable', ENABLE, (a) => ENABLE.encode(a), (x) => ENABLE.decode(x)],
        ['enable (again)', ENABLE, (a) => ENABLE.encode(a), (x) => ENABLE.decode(x)],
        ['redeem (not disabled)', REDEEM, (a) => REDEEM.encode(a, 'f'.repeat(32)), (x) => REDEEM.decode(x)],
        [
          'reassert (enabled)',
          REASSERT,
          (a) => REASSERT.encode(a, { incident: 'old', at: '1' }),
          (x) => REASSERT.decode(x),
        ],
        [
          'reassert (restored)',
          REASSERT,
          (a) => REASSERT.encode(a, { incident: 'new', at: String(Date.now() + 86_400_000), account: a }),
          (x) => REASSERT.decode(x),
        ],
        [
          'disable (already)',
          DISABLE,
          (a) => DISABLE.encode({ account: a, reason: 'r', by: 'b', incident: 'i' }),
          (x) => DISABLE.decode(x),
        ],
      ]
      const twins = { 2: 'resp2@example.com', 3: 'resp3@example.com' } as const
      for (const [what, script, call, decode] of steps) {
        const [r2, r3] = [await run(2, script, call(twins[2])), await run(3, script, call(twins[3]))]
        assert.deepEqual(shape(r3), shape(r2), `${what}: reply shapes`)
        assert.deepEqual(
          comparable(decode(r3, twins[3]), twins[3]),
          comparable(decode(r2, twins[2]), twins[2]),
          `${what}: decoded`,
        )
      }
    } finally {
      for (const c of Object.values(clients)) c.destroy()
    }
  })
})
