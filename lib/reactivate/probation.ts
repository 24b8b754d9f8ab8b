/**
 * Probation after an enable ([reactivate] probation, probation_factor): for a while the account's
 * limits are scaled down, so a second incident with the same stolen access is caught sooner.
 * Every enable (a reply, the CLI, auto_enable_after) starts it; counting reads it from the store.
 */
import { probationRules, type Config, type Rule } from '../config'
import { utc } from '../text'
import type { Store } from '../store'

/** Starts the account's probation after an enable at `now`; answers the audit text for it ('' when off). */
export async function beginProbation(store: Store, config: Config, account: string, now: number): Promise<string> {
  const { probationMs, probationFactor } = config.reactivate
  if (probationMs <= 0) return ''
  const until = now + probationMs
  await store.startProbation(account, until)
  return `probation until ${utc(until)} (limits x${probationFactor})`
}

/** What a counting call passes so the store scales the limits of an account on probation. */
export function probationOf(config: Config): { probationFactor?: number } {
  return config.reactivate.probationMs > 0 ? { probationFactor: config.reactivate.probationFactor } : {}
}

/** The rules that apply to the account now: `rules`, scaled down while it is on probation. */
export async function rulesOnProbation(
  store: Store,
  config: Config,
  account: string,
  rules: readonly Rule[],
  now: number,
): Promise<readonly Rule[]> {
  if (config.reactivate.probationMs <= 0 || rules.length === 0) return rules
  const until = await store.probationUntil(account, now)
  return until > 0 ? probationRules(rules, config.reactivate.probationFactor) : rules
}
