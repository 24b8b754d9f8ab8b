// Section 2: Redis per message of haraka-plugin-limit and hijack-guard under load: commands and
// their time (INFO commandstats over the throughput rounds), redis-server CPU, round trips (MONITOR,
// sessions of MONITOR_PER_SESSION messages and of one message), and hijack-guard's two mail-path
// store calls timed alone.

import { monitorRedis, type Monitor, type RedisServer } from '../support'
import { quietLog, type Dist } from './dist'
import { SIDE_LABELS, type BenchEnv } from './env'
import { load } from './load'
import { MONITOR_PER_SESSION } from './options'
import { addStats, parseCommandstats, type CommandStats } from './redis-stats'
import { f1, f2, f3, say, table, target } from './report'
import type { CommandRow, Pooled, RedisCostResult, SessionShape, SideRedisCost, StoreCallCost, Target } from './result'
import { latency, procCpu } from './stats'
import { summaryFor } from './summaries'

/** The round-trip targets: one per message plus one per session of MONITOR_PER_SESSION; 2 for one-message sessions. */
export const MAX_TRIPS_PER_MESSAGE = 1 + 1 / MONITOR_PER_SESSION
export const MAX_TRIPS_SINGLE = 2

/** Commands Haraka's client(s) sent, counted with MONITOR, while `total` messages go through `port`. */
async function shapeOf(
  env: BenchEnv,
  mon: Monitor,
  port: number,
  label: string,
  perSession: number,
  total: number,
): Promise<SessionShape> {
  mon.reset()
  const r = await load({ accounts: env.accounts, sessions: env.options.sessions, perSession, maxMessages: total, port })
  await new Promise((resolve) => setTimeout(resolve, 300)) // the last MONITOR lines
  // nothing else talks to this redis-server meanwhile: every client command is Haraka's
  const { client, script } = mon.counts()
  const trips = Object.values(client).reduce((a, b) => a + b, 0)
  return {
    label,
    perSession,
    sent: r.sent,
    sessions: r.sessions,
    client,
    script,
    trips,
    tripsPerMessage: trips / r.sent,
    errors: r.errors,
  }
}

/** One side's Redis figures: commandstats of its throughput rounds, and two MONITOR runs. */
async function sideCost(env: BenchEnv, mon: Monitor, name: 'limit' | 'with', pooled: Pooled): Promise<SideRedisCost> {
  const o = env.options
  const port = env.sides[name].haraka.port
  const shapes = [
    await shapeOf(
      env,
      mon,
      port,
      `${MONITOR_PER_SESSION} messages per session`,
      MONITOR_PER_SESSION,
      o.monitorMessages,
    ),
    await shapeOf(env, mon, port, '1 message per session', 1, o.monitorSessions),
  ]
  // trips = a * messages + b * sessions, from the two shapes
  const [s1, s2] = shapes as [SessionShape, SessionShape]
  const det = s1.sent * s2.sessions - s2.sent * s1.sessions
  const perMessage = det ? (s1.trips * s2.sessions - s2.trips * s1.sessions) / det : NaN
  const perSession = (s1.trips - perMessage * s1.sent) / s1.sessions
  const sent = pooled.sent
  const totals = pooled.commandStats
  const commands: CommandRow[] = Object.entries(totals)
    .sort(([, x], [, y]) => y.calls - x.calls)
    .map(([command, t]) => ({
      command,
      callsPerMessage: t.calls / sent,
      fromHarakaPerMessage: (s1.client[command] ?? 0) / s1.sent,
      insideScriptPerMessage: (s1.script[command] ?? 0) / s1.sent,
      usecPerMessage: t.usec / sent,
      usecPerCall: t.usec / t.calls,
    }))
  // a script's usec include the commands it runs: count each command's top-level calls only
  const topLevelUsec = Object.entries(totals).reduce((acc, [command, t]) => {
    const fromClient = s1.client[command] ?? 0
    const inScript = s1.script[command] ?? 0
    return acc + (fromClient + inScript ? (t.usec * fromClient) / (fromClient + inScript) : t.usec)
  }, 0)
  return {
    messages: sent,
    commands,
    commandsPerMessage: Object.values(totals).reduce((a, t) => a + t.calls, 0) / sent,
    redisCpuUsPerMessage: pooled.cpuPerMessageUs.redis,
    commandUsecPerMessage: topLevelUsec / sent,
    shapes,
    roundTripsPerMessageSolved: perMessage,
    roundTripsPerSessionSolved: perSession,
  }
}

function report(name: string, c: SideRedisCost): void {
  say()
  say(
    `  ${name}: INFO commandstats over its throughput rounds (${c.messages} messages); "from Haraka" / "inside a script" from MONITOR:`,
  )
  table([
    ['command', 'calls/msg', 'from Haraka', 'inside script', 'usec/msg', 'usec/call'],
    ...c.commands.map((x) => [
      x.command,
      f3(x.callsPerMessage),
      f3(x.fromHarakaPerMessage),
      f3(x.insideScriptPerMessage),
      f2(x.usecPerMessage),
      f2(x.usecPerCall),
    ]),
  ])
  say(
    `  ${f2(c.commandsPerMessage)} commands per message; redis-server CPU ${f1(c.redisCpuUsPerMessage)} us per message (/proc, includes networking), of which ${f1(c.commandUsecPerMessage)} us executing commands`,
  )
  table([
    ['round trips (MONITOR)', 'messages', 'sessions', 'round trips', 'per message', 'commands (calls)'],
    ...c.shapes.map((s) => [
      s.label,
      s.sent,
      s.sessions,
      s.trips,
      f3(s.tripsPerMessage),
      Object.entries(s.client)
        .map(([k, v]) => `${k} ${v}`)
        .join(', '),
    ]),
  ])
  say(
    `  => ${f2(c.roundTripsPerMessageSolved)} round trips per message + ${f2(c.roundTripsPerSessionSolved)} per authenticated session`,
  )
}

export async function redisCost(
  env: BenchEnv,
  pooled: { readonly limit: Pooled; readonly with: Pooled },
): Promise<{ result: RedisCostResult; targets: Target[] }> {
  say()
  say('2. Redis per message, haraka-plugin-limit and hijack-guard')
  const mon = await monitorRedis(env.redis.port)
  const limit = await sideCost(env, mon, 'limit', pooled.limit)
  const withPlugin = await sideCost(env, mon, 'with', pooled.with)
  mon.stop()
  report(SIDE_LABELS.limit, limit)
  report(SIDE_LABELS.with, withPlugin)
  const idle = await idleStoreCost(env.dist, env.redis, env.options.idleCalls)
  say()
  say(`  hijack-guard's two mail-path store calls alone, one at a time from node, Haraka idle (${idle.calls} each):`)
  const row = (label: string, c: StoreCallCost) => [
    label,
    f1(c.usecPerCall),
    f1(c.cpuUsPerCall),
    f3(c.latency.p50),
    f3(c.latency.p99),
  ]
  table([
    ['store call', 'redis usec/call', 'redis CPU us/call', 'round trip p50 ms', 'p99 ms'],
    row('record', idle.record),
    row('getDisabled', idle.getDisabled),
  ])
  const [many, one] = withPlugin.shapes as [SessionShape, SessionShape]
  const targets = [
    target(
      many.tripsPerMessage <= MAX_TRIPS_PER_MESSAGE,
      `round trips per message <= 1 + 1/${MONITOR_PER_SESSION}, sessions of ${MONITOR_PER_SESSION} messages`,
      many.tripsPerMessage,
      `${f3(many.tripsPerMessage)} (${many.trips} for ${many.sent} messages in ${many.sessions} sessions; haraka-plugin-limit ${f3(limit.shapes[0]?.tripsPerMessage ?? NaN)})`,
    ),
    target(
      one.tripsPerMessage <= MAX_TRIPS_SINGLE,
      `round trips per message <= ${MAX_TRIPS_SINGLE}, one-message sessions`,
      one.tripsPerMessage,
      `${f3(one.tripsPerMessage)} (${one.trips} for ${one.sent} messages; haraka-plugin-limit ${f3(limit.shapes[1]?.tripsPerMessage ?? NaN)})`,
    ),
  ]
  return { result: { limit, with: withPlugin, idle }, targets }
}

/** Redis time of the calls in `stats`: the scripts' when any ran (they include their commands), else every command's. */
function topLevelUsec(stats: CommandStats): number {
  const scripts = (stats.evalsha?.usec ?? 0) + (stats.eval?.usec ?? 0)
  return scripts || Object.values(stats).reduce((a, t) => a + t.usec, 0)
}

/** The store's two mail-path calls on their own: n sequential calls each, over 200 accounts. */
async function idleStoreCost(dist: Dist, redis: RedisServer, n: number): Promise<RedisCostResult['idle']> {
  const config = dist.parseConfig(
    {
      limits: { messages: '100000000/30m', recipients: '100000000/30m' },
      redis: { host: '127.0.0.1', port: String(redis.port) },
    },
    'mx.test.example',
  )
  const store = dist.createRedisStore({ redis: config.redis, timeoutMs: 10_000, log: quietLog })
  await store.ready(10_000)
  const account = (i: number): string => `idle${i % 200}@test.example`
  const calls = {
    record: (i: number): Promise<unknown> =>
      store.record({
        account: account(i),
        recipients: 1,
        rules: config.rules,
        mode: 'enforce',
        summary: summaryFor(i, 0),
        token: 'f'.repeat(32),
        tokenTtlMs: config.reactivate.tokenTtlMs,
      }),
    getDisabled: (i: number): Promise<unknown> => store.getDisabled(account(i)),
  }
  const cost = async (call: (i: number) => Promise<unknown>): Promise<StoreCallCost> => {
    for (let i = 0; i < 200; i++) await call(i) // the script is loaded, the accounts exist
    await redis.command(['CONFIG', 'RESETSTAT'])
    const cpu0 = procCpu(redis.pid)
    const samples: number[] = []
    for (let i = 0; i < n; i++) {
      const t0 = process.hrtime.bigint()
      await call(i)
      samples.push(Number(process.hrtime.bigint() - t0) / 1e6)
    }
    const cpu = procCpu(redis.pid) - cpu0
    const stats: CommandStats = {}
    addStats(stats, parseCommandstats(await redis.command(['INFO', 'commandstats'])))
    return { usecPerCall: topLevelUsec(stats) / n, cpuUsPerCall: (cpu / n) * 1e6, latency: latency(samples) }
  }
  const record = await cost(calls.record)
  const getDisabled = await cost(calls.getDisabled)
  await store.close()
  return { calls: n, record, getDisabled }
}
