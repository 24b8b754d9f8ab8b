// Driving the store with controlled timing, to obtain busy accounts without waiting for real
// windows: rules of the default shape (the same limits and bucket count) whose buckets last
// 100-300 ms instead of a minute. The store's clock is Redis TIME, on this same machine as
// Date.now(), so a bucket boundary is a multiple of bucketMs on either clock.

import type { Rule } from '../lib/config'
import type { MessageSummary, Store } from '../lib/store'
import { quietLog, type Dist } from './dist'
import { parallel } from './stats'

/**
 * A store on `port` and the rules `messages = M/W, recipients = R/W, buckets = B` with W = B x
 * bucketMs, and [signals] networks of the default shape scaled the same way (8/W, 12/4W).
 */
export async function scaledStore(
  dist: Dist,
  port: number,
  { buckets, bucketMs, messages = 500, recipients = 2500 }: ScaledRules,
): Promise<{ store: Store; rules: readonly Rule[]; tokenTtlMs: number }> {
  const windowMs = buckets * bucketMs
  const config = dist.parseConfig(
    {
      limits: {
        messages: `${messages}/${windowMs}ms`,
        recipients: `${recipients}/${windowMs}ms`,
        buckets: String(buckets),
      },
      signals: { networks: `8/${windowMs}ms, 12/${4 * windowMs}ms` },
      redis: { host: '127.0.0.1', port: String(port) },
    },
    'mx.test.example',
  )
  for (const r of config.rules) {
    if (r.kind !== 'networks' && r.bucketMs !== bucketMs)
      throw new Error(`rule ${r.text}: buckets of ${r.bucketMs} ms, not ${bucketMs}`)
  }
  const store = dist.createRedisStore({ redis: config.redis, timeoutMs: 10_000, log: quietLog })
  await store.ready(10_000)
  return { store, rules: config.rules, tokenTtlMs: config.reactivate.tokenTtlMs }
}

export interface ScaledRules {
  readonly buckets: number
  readonly bucketMs: number
  /** Default 500 and 2500, the default config's limits. */
  readonly messages?: number
  readonly recipients?: number
}

/** One message of `account` recorded; false when the store did not answer ok. */
export async function recordOne(
  s: { readonly store: Store; readonly rules: readonly Rule[]; readonly tokenTtlMs: number },
  account: string,
  recipients: number,
  summary: MessageSummary,
): Promise<boolean> {
  try {
    const r = await s.store.record({
      account,
      recipients,
      rules: s.rules,
      mode: 'enforce',
      summary,
      token: 'f'.repeat(32),
      tokenTtlMs: s.tokenTtlMs,
      // The steady state of a user: one network, seen already.
      network: '198.51.100.0/24',
      warnAt: 0.8,
    })
    return r.status === 'ok'
  } catch {
    return false
  }
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, Math.max(0, ms)))

/**
 * Calls `pass(k)` once in each of `passes` consecutive buckets of `bucketMs` (starting a few ms
 * after a bucket boundary); answers how many passes ran over into the next bucket.
 */
export async function oncePerBucket(
  passes: number,
  bucketMs: number,
  pass: (k: number) => Promise<void>,
): Promise<number> {
  const margin = Math.min(10, bucketMs / 10)
  let start = (Math.floor(Date.now() / bucketMs) + 1) * bucketMs
  let overruns = 0
  for (let k = 0; k < passes; k++) {
    await sleep(start + margin - Date.now())
    await pass(k)
    const next = start + bucketMs
    if (Date.now() > next + margin) overruns++
    start = Math.max(next, Math.floor(Date.now() / bucketMs) * bucketMs)
  }
  return overruns
}

/** Every account of `names` records one message, 50 at a time; answers the calls that were not ok. */
export async function recordAll(
  s: { readonly store: Store; readonly rules: readonly Rule[]; readonly tokenTtlMs: number },
  names: readonly string[],
  message: (i: number) => { readonly recipients: number; readonly summary: MessageSummary },
): Promise<number> {
  let notOk = 0
  await parallel(names, 50, async (name, i) => {
    const m = message(i)
    if (!(await recordOne(s, name, m.recipients, m.summary))) notOk++
  })
  return notOk
}

/**
 * Records at `perSecond` messages per second, spread evenly, from now until `untilMs` (Date.now()
 * time), message n for `message(n)`; `sent` counts the calls issued, `notOk` those not ok.
 */
export async function pacedUntil(
  untilMs: number,
  perSecond: number,
  state: { sent: number; notOk: number; readonly t0: number },
  message: (n: number) => Promise<boolean>,
): Promise<void> {
  const inflight = new Set<Promise<void>>()
  while (Date.now() < untilMs) {
    const due = Math.floor(((Date.now() - state.t0) / 1000) * perSecond)
    while (state.sent < due) {
      const p = message(state.sent++).then((ok) => {
        if (!ok) state.notOk++
        inflight.delete(p)
      })
      inflight.add(p)
    }
    await sleep(1)
  }
  await Promise.all(inflight)
}
