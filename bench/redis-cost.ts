// Section 2: Redis per message with the plugin: commands and their time (INFO commandstats over
// the throughput rounds), round trips (MONITOR, two session shapes), redis CPU, and the store's
// two mail-path calls timed alone.

import type { RedisServer } from '../support'
import type { Measured } from './ab'
import { quietLog, type Dist } from './dist'
import type { BenchEnv } from './env'
import { load } from './load'
import { addStats, monitorRedis, parseCommandstats, type CommandStats } from './redis-stats'
import { f1, f2, f3, say, table, target } from './report'
import type { CommandRow, Pooled, RedisCostResult, SessionShape, StoreCallCost, Target } from './result'
import { latency, procCpu } from './stats'
import { summaryFor } from './summaries'

export async function redisCost(
  env: BenchEnv,
  rounds: readonly Measured[],
  A: Pooled,
): Promise<{ result: RedisCostResult; targets: Target[] }> {
  const o = env.options
  const withPlugin = env.sides.A.haraka
  say()
  say('2. Redis per message (with the plugin)')
  const totals: CommandStats = {}
  for (const r of rounds) if (r.stats) addStats(totals, r.stats)
  const mon = await monitorRedis(env.redis.port)
  const shapes: SessionShape[] = []
  const runs = [
    [`${o.perSession} messages per session`, o.perSession, o.monitorMessages],
    ['1 message per session', 1, o.monitorSessions],
  ] as const
  for (const [label, perSession, total] of runs) {
    mon.reset()
    const r = await load({
      accounts: env.accounts,
      sessions: o.sessions,
      perSession,
      maxMessages: total,
      port: withPlugin.port,
    })
    await new Promise((resolve) => setTimeout(resolve, 300)) // the last MONITOR lines
    const client = { ...mon.counts.client }
    const script = { ...mon.counts.script }
    const trips = Object.values(client).reduce((a, b) => a + b, 0)
    shapes.push({
      label,
      perSession,
      sent: r.sent,
      sessions: r.sessions,
      client,
      script,
      trips,
      tripsPerMessage: trips / r.sent,
      errors: r.errors,
    })
  }
  mon.stop()
  // trips = a * messages + b * sessions, from the two shapes
  const [s1, s2] = shapes as [SessionShape, SessionShape]
  const det = s1.sent * s2.sessions - s2.sent * s1.sessions
  const roundTripsPerMessage = det ? (s1.trips * s2.sessions - s2.trips * s1.sessions) / det : NaN
  const roundTripsPerSession = (s1.trips - roundTripsPerMessage * s1.sent) / s1.sessions
  say(
    `  INFO commandstats after CONFIG RESETSTAT, summed over the ${rounds.length} throughput rounds with the plugin (${A.sent} messages,`,
  )
  say(
    `  ${f1(A.sent / A.sessions)} messages per session); "from Haraka" / "inside the script" split by MONITOR in a separate run:`,
  )
  const commands: CommandRow[] = Object.entries(totals)
    .sort(([, x], [, y]) => y.calls - x.calls)
    .map(([command, t]) => ({
      command,
      callsPerMessage: t.calls / A.sent,
      fromHarakaPerMessage: (s1.client[command] ?? 0) / s1.sent,
      insideScriptPerMessage: (s1.script[command] ?? 0) / s1.sent,
      usecPerMessage: t.usec / A.sent,
      usecPerCall: t.usec / t.calls,
    }))
  table([
    ['command', 'calls/msg', 'from Haraka', 'inside script', 'usec/msg', 'usec/call'],
    ...commands.map((c) => [
      c.command,
      f3(c.callsPerMessage),
      f3(c.fromHarakaPerMessage),
      f3(c.insideScriptPerMessage),
      f2(c.usecPerMessage),
      f2(c.usecPerCall),
    ]),
  ])
  say('  (usec of evalsha includes the commands the script runs; those are also listed on their own lines)')
  const evalUsec = (totals.evalsha?.usec ?? 0) + (totals.eval?.usec ?? 0)
  const clientHgetall = s1.client.hgetall ?? 0
  const clientHgetallShare = clientHgetall / (clientHgetall + (s1.script.hgetall ?? 0) || 1)
  const commandUsecPerMessage = (evalUsec + (totals.hgetall?.usec ?? 0) * clientHgetallShare) / A.sent
  const redisCpuUsPerMessage = A.cpuPerMessageUs.redis
  say(
    `  Redis CPU per message: ${f1(redisCpuUsPerMessage)} us of redis-server process time (/proc, includes networking), of which`,
  )
  say(`  ${f1(commandUsecPerMessage)} us executing commands (commandstats: the script and the HGETALLs Haraka sends)`)
  say('  round trips (commands Haraka sent), counted with MONITOR:')
  table([
    ['session shape', 'messages', 'sessions', 'round trips', 'per message', 'commands (calls)'],
    ...shapes.map((s) => [
      s.label,
      s.sent,
      s.sessions,
      s.trips,
      f2(s.tripsPerMessage),
      Object.entries(s.client)
        .map(([k, v]) => `${k} ${v}`)
        .join(', '),
    ]),
  ])
  say(
    `  => ${f2(roundTripsPerMessage)} round trips per message (MAIL FROM + queue_outbound) + ${f2(roundTripsPerSession)} per authenticated session (AUTH check)`,
  )
  const idle = await idleStoreCost(env.dist, env.redis, o.idleCalls)
  say(
    `  the same two calls alone, one at a time from node with nothing else running on Haraka's side (${idle.calls} each):`,
  )
  const row = (label: string, c: StoreCallCost) => [
    label,
    f1(c.usecPerCall),
    f1(c.cpuUsPerCall),
    f3(c.latency.p50),
    f3(c.latency.p99),
  ]
  table([
    ['store call', 'redis usec/call', 'redis CPU us/call', 'round trip p50 ms', 'p99 ms'],
    row('record (evalsha)', idle.record),
    row('getDisabled (hgetall)', idle.getDisabled),
  ])
  say(
    '  (under load the same commands take longer in commandstats: redis shares the 2 cores with Haraka, the sink and the client)',
  )
  const targets = shapes.map((s) =>
    target(
      s.tripsPerMessage <= 2,
      `<= 2 Redis round trips per message, ${s.label}`,
      s.tripsPerMessage,
      f2(s.tripsPerMessage),
    ),
  )
  return {
    result: {
      messages: A.sent,
      messagesPerSession: A.sent / A.sessions,
      commands,
      redisCpuUsPerMessage,
      commandUsecPerMessage,
      shapes,
      roundTripsPerMessage,
      roundTripsPerSession,
      idle,
    },
    targets,
  }
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
  const cost = async (call: (i: number) => Promise<unknown>, command: string): Promise<StoreCallCost> => {
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
    const top = parseCommandstats(await redis.command(['INFO', 'commandstats']))[command]
    return { usecPerCall: top ? top.usec / top.calls : NaN, cpuUsPerCall: (cpu / n) * 1e6, latency: latency(samples) }
  }
  const record = await cost(calls.record, 'evalsha')
  const getDisabled = await cost(calls.getDisabled, 'hgetall')
  await store.close()
  return { calls: n, record, getDisabled }
}
