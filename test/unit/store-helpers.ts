// What the counting tests (buckets, window-change) share: the clock they start from and rules
// built the way the config builds them.

import { parseRules, type LimitKind, type Rule } from '../../lib/config'

export const MIN = 60_000

/** 2030-01-01T00:00:00Z, a multiple of every bucket size the tests use. */
export const T0 = Date.UTC(2030, 0, 1)

/** The one rule `text` (e.g. "10/10m") of `kind` with `buckets` buckets. */
export function rule(kind: LimitKind, text: string, buckets: number): Rule {
  const [first, ...rest] = parseRules(`limits.${kind}`, kind, text, buckets)
  if (!first || rest.length > 0) throw new Error(`rule: "${text}" is not exactly one rule`)
  return first
}

/** The rules of [limits] messages= and recipients= (either may be '' for none), in that order. */
export function rules(messages: string, recipients: string, buckets: number): Rule[] {
  return [
    ...parseRules('limits.messages', 'messages', messages, buckets),
    ...parseRules('limits.recipients', 'recipients', recipients, buckets),
  ]
}
