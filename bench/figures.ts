// The headline figures of each side (the `sides` of the JSON result), gathered from the sections,
// and the report's side-by-side table of them.

import { SIDE_LABELS, SIDE_NAMES, type SideName } from './env'
import { MONITOR_PER_SESSION } from './options'
import { f0, f1, f2, f3, pct, say, table } from './report'
import type {
  BenchResult,
  BusyResult,
  RedisCostResult,
  SideFigures,
  SideRedisCost,
  SingleSessionResult,
  ThroughputResult,
} from './result'

const NO_REDIS: Pick<
  SideFigures,
  'redisCpuUsPerMsg' | 'redisCommandsPerMsg' | 'roundTripsPerMsg' | 'roundTripsPerMsgSingle'
> = { redisCpuUsPerMsg: 0, redisCommandsPerMsg: 0, roundTripsPerMsg: 0, roundTripsPerMsgSingle: 0 }

function figures(
  name: SideName,
  t: ThroughputResult,
  single: SingleSessionResult,
  redis: SideRedisCost | null,
): SideFigures {
  const load = t.sides[name]
  const one = single.sides[name]
  const ratio = t.ratioToBare[name]
  const p50s = one.roundLatencies.map((l) => l.p50)
  const p99s = one.roundLatencies.map((l) => l.p99)
  return {
    msgPerSec: load.rate,
    msgPerSecMin: Math.min(...load.rates),
    msgPerSecMax: Math.max(...load.rates),
    ratioToBare: ratio.pooled,
    ratioToBareMin: ratio.min,
    ratioToBareMax: ratio.max,
    p50Ms: load.latency.p50,
    p99Ms: load.latency.p99,
    singleP50Ms: one.latency.p50,
    singleP99Ms: one.latency.p99,
    singleP50MsMin: Math.min(...p50s),
    singleP50MsMax: Math.max(...p50s),
    singleP99MsMin: Math.min(...p99s),
    singleP99MsMax: Math.max(...p99s),
    harakaCpuUsPerMsg: load.cpuPerMessageUs.haraka,
    ...(redis
      ? {
          redisCpuUsPerMsg: redis.redisCpuUsPerMessage,
          redisCommandsPerMsg: redis.commandsPerMessage,
          roundTripsPerMsg: redis.shapes[0]?.tripsPerMessage ?? NaN,
          roundTripsPerMsgSingle: redis.shapes[1]?.tripsPerMessage ?? NaN,
        }
      : NO_REDIS),
  }
}

/** The `sides` of the result. */
export function sideFigures(
  t: ThroughputResult,
  single: SingleSessionResult,
  redis: RedisCostResult,
  busy: BusyResult,
): BenchResult['sides'] {
  const [def, wide] = busy.rows
  return {
    without: figures('without', t, single, null),
    limit: figures('limit', t, single, redis.limit),
    with: {
      ...figures('with', t, single, redis.with),
      redisCpuUsPerMsgBusy: def?.redisCpuUsPerMessage ?? NaN,
      redisCpuUsPerMsgBusy60: wide?.redisCpuUsPerMessage ?? NaN,
      scriptUsecPerMsgBusy: def?.scriptUsecPerMessage ?? NaN,
      scriptUsecPerMsgBusy60: wide?.scriptUsecPerMessage ?? NaN,
    },
  }
}

/** The three sides side by side, with the spread where there are rounds. */
export function reportSides(sides: BenchResult['sides']): void {
  const row = (label: string, cell: (x: SideFigures) => string): string[] => [
    label,
    ...SIDE_NAMES.map((k) => cell(sides[k])),
  ]
  say()
  say('the three sides (pooled; in brackets the min-max of the rounds)')
  table([
    ['', ...SIDE_NAMES.map((k) => SIDE_LABELS[k])],
    row('msg/s under load', (x) => `${f0(x.msgPerSec)} (${f0(x.msgPerSecMin)}-${f0(x.msgPerSecMax)})`),
    row('ratio to bare', (x) => `${pct(x.ratioToBare)} (${pct(x.ratioToBareMin)}-${pct(x.ratioToBareMax)})`),
    row('p50 / p99 under load, ms', (x) => `${f2(x.p50Ms)} / ${f2(x.p99Ms)}`),
    row('single session p50, ms', (x) => `${f3(x.singleP50Ms)} (${f3(x.singleP50MsMin)}-${f3(x.singleP50MsMax)})`),
    row('single session p99, ms', (x) => `${f3(x.singleP99Ms)} (${f3(x.singleP99MsMin)}-${f3(x.singleP99MsMax)})`),
    row('Haraka CPU us/msg', (x) => f0(x.harakaCpuUsPerMsg)),
    row('redis CPU us/msg', (x) => f1(x.redisCpuUsPerMsg)),
    row('redis commands/msg', (x) => f2(x.redisCommandsPerMsg)),
    row(`round trips/msg, ${MONITOR_PER_SESSION}-msg sessions`, (x) => f3(x.roundTripsPerMsg)),
    row('round trips/msg, 1-msg sessions', (x) => f3(x.roundTripsPerMsgSingle)),
  ])
  const w = sides.with
  say(
    `  hijack-guard, busy account: redis CPU ${f1(w.redisCpuUsPerMsgBusy)} us/msg (script ${f1(w.scriptUsecPerMsgBusy)} us), buckets = 60: ${f1(w.redisCpuUsPerMsgBusy60)} us/msg (script ${f1(w.scriptUsecPerMsgBusy60)} us)`,
  )
}
