// npm run simulate: detection quality. Synthetic sending profiles (sim/profiles.ts) replayed
// through the compiled plugin's hooks (sim/run.ts) on the memory store with a virtual clock, at
// the shipped default config; per profile: messages attempted and accepted, whether and when the
// account was disabled, spam that escaped, false disables, warnings; then the targets of issue 11.
//
//   npm run simulate                         30 days of legitimate profiles, hijacks up to 3 days
//   npm run simulate -- --quick              a smoke test: fewer users, 7 days, hijacks up to 1 day
//   npm run simulate -- --json FILE          also write the results as JSON
//   npm run simulate -- --seed N             another reproducible draw (default 1)
//   npm run simulate -- --profile NAME       only these profiles (repeat the option)
//   npm run simulate -- --config FILE        ini text over the shipped defaults (tuning experiments)
//   npm run simulate -- --markdown           also the results table of docs/detection.md
//   npm run simulate -- --store redis        cross-check: a compressed trace against a real
//                                            redis-server and the memory store; exit 1 on any
//                                            decision that differs (sim/redis.ts; --scale N)
//
// Exit code: 0 when the simulation ran (a missed target is reported, not an error); 1 when it
// could not run or (--store redis) the stores decided differently.

import * as fs from 'node:fs'
import { parseArgs } from 'node:util'
import { stopAll } from '../support/process'
import { DAY } from './events'
import { HIJACK_CAP_MS, LEGIT_DAYS, PROFILES, type Profile, type RunSize } from './profiles'
import { crossCheck, DEFAULT_SCALE } from './redis'
import { markdown, report } from './report'
import { judge, runProfile, type ProfileResult } from './simulate'
import { parseConfig } from '../lib/config'
import { readShippedIni, withOverrides } from './ini'

const USAGE = `usage: npm run simulate -- [--quick] [--seed N] [--json FILE] [--profile NAME]... [--config FILE] [--markdown]\n       [--store memory|redis] [--scale N]`

interface Options {
  readonly quick: boolean
  readonly seed: number
  readonly json?: string
  readonly profiles: readonly Profile[]
  readonly store: 'memory' | 'redis'
  readonly scale: number
  /** Also print the results as the Markdown table of docs/detection.md. */
  readonly markdown: boolean
  /** Config over the shipped defaults (--config FILE); '' for none. */
  readonly ini: string
}

function parseOptions(argv: string[]): Options {
  const { values } = parseArgs({
    args: argv,
    options: {
      quick: { type: 'boolean', default: false },
      seed: { type: 'string', default: '1' },
      json: { type: 'string' },
      profile: { type: 'string', multiple: true },
      store: { type: 'string', default: 'memory' },
      scale: { type: 'string', default: String(DEFAULT_SCALE) },
      config: { type: 'string' },
      markdown: { type: 'boolean', default: false },
      help: { type: 'boolean', default: false },
    },
    strict: true,
  })
  if (values.help) {
    console.log(USAGE)
    process.exit(0)
  }
  const seed = Number(values.seed)
  if (!Number.isSafeInteger(seed)) throw new Error(`--seed ${values.seed}: expected a whole number`)
  const scale = Number(values.scale)
  if (!(scale >= 1)) throw new Error(`--scale ${values.scale}: expected a number of at least 1`)
  if (values.store !== 'memory' && values.store !== 'redis') throw new Error(`--store ${values.store}: memory or redis`)
  const names = values.profile ?? []
  for (const n of names) {
    if (!PROFILES.some((p) => p.name === n))
      throw new Error(`--profile ${n}: one of ${PROFILES.map((p) => p.name).join(', ')}`)
  }
  return {
    quick: values.quick,
    seed,
    ...(values.json === undefined ? {} : { json: values.json }),
    profiles: names.length ? PROFILES.filter((p) => names.includes(p.name)) : PROFILES,
    store: values.store,
    scale,
    markdown: values.markdown,
    ini: values.config === undefined ? '' : fs.readFileSync(values.config, 'utf8'),
  }
}

async function simulate(o: Options): Promise<number> {
  const size: RunSize = o.quick
    ? { quick: true, legitDays: LEGIT_DAYS.quick, hijackCapMs: HIJACK_CAP_MS.quick }
    : { quick: false, legitDays: LEGIT_DAYS.full, hijackCapMs: HIJACK_CAP_MS.full }
  const raw = withOverrides(readShippedIni(), o.ini)
  const config = parseConfig(raw)
  const messageLimit = Math.min(...config.rules.filter((r) => r.kind === 'messages').map((r) => r.max))
  console.log(`hijack-guard detection simulator${o.quick ? ' (--quick: a smoke test)' : ''}; seed ${o.seed}`)
  console.log(
    `  the compiled plugin's hooks, the memory store with a virtual clock, the shipped default config (config/hijack-guard.ini):`,
  )
  if (o.ini) console.log('  with --config over the defaults (not the shipped config)')
  for (const name of ['limits', 'signals', 'warn']) {
    const keys = Object.entries(raw[name] ?? {}).map(([k, v]) => `${k} = ${String(v)}`)
    if (keys.length) console.log(`  [${name}] ${keys.join('; ')}`)
  }
  console.log(
    `  legitimate profiles ${size.legitDays} days; hijack profiles until every account is disabled or ${size.hijackCapMs / DAY} day(s)`,
  )
  const results: ProfileResult[] = []
  const started = Date.now()
  for (const profile of o.profiles) {
    const t0 = Date.now()
    const r = await runProfile(profile, size, o.seed, o.ini)
    results.push(r)
    console.log(`  ${profile.name.padEnd(17)}${profile.summary} (${((Date.now() - t0) / 1000).toFixed(1)} s)`)
  }
  const targets = judge(results, messageLimit)
  report(results, targets)
  console.log(`\n${((Date.now() - started) / 1000).toFixed(1)} s`)
  if (o.markdown) console.log(`\n${markdown(results, targets)}`)
  if (o.json) {
    fs.writeFileSync(
      o.json,
      `${JSON.stringify({ seed: o.seed, quick: o.quick, legitDays: size.legitDays, hijackCapDays: size.hijackCapMs / DAY, profiles: results, targets }, null, 2)}\n`,
    )
  }
  return 0
}

async function main(): Promise<number> {
  let o: Options
  try {
    o = parseOptions(process.argv.slice(2))
  } catch (err) {
    console.error(`${(err as Error).message}\n${USAGE}`)
    return 1
  }
  return o.store === 'redis' ? crossCheck(o) : simulate(o)
}

main()
  .catch((err: unknown) => {
    console.error(err instanceof Error ? (err.stack ?? err.message) : String(err))
    return 1
  })
  .then(async (code) => {
    await stopAll()
    process.exit(code)
  })
  .catch(() => process.exit(1))
