// What several unit tests share: reading addresses off a parsed header, a fresh incident token,
// tripping an account for real in a store, and narrowing a reply outcome to a refusal.

import * as assert from 'node:assert/strict'
import * as crypto from 'node:crypto'
import type { Header } from 'haraka-email-message'
import type { Rule } from '../../lib/config'
import type { ReplyOutcome } from '../../lib/reactivate'
import type { RecordInput, Store } from '../../lib/store'

/** A random incident token: 32 hex digits, as the plugin issues them. */
export const newToken = (): string => crypto.randomBytes(16).toString('hex')

/** The addresses of an address field (From, To, Reply-To...), in order; a group fails the test. */
export function addressesOf(header: Header, field: string): string[] {
  return header.get_addresses(field).map((a) => {
    if ('addresses' in a) assert.fail(`${field} holds a group: ${JSON.stringify(header.get(field))}`)
    return a.address
  })
}

export interface TripOptions {
  readonly account: string
  /** Rules whose first limit is 1 message, so that the second message disables the account. */
  readonly rules: readonly Rule[]
  readonly tokenTtlMs: number
  /** The token the disable record gets; a new one by default. */
  readonly token?: string
}

/**
 * Disables an account the way the plugin does: two messages over a limit of one, the second
 * refused under `token`. Resolves the token once the store reports the account disabled.
 */
export async function trip(store: Store, options: TripOptions): Promise<string> {
  const token = options.token ?? newToken()
  const input = (t: string): RecordInput => ({
    account: options.account,
    recipients: 1,
    rules: options.rules,
    mode: 'enforce',
    summary: { ip: '203.0.113.9', helo: 'WIN-7Q2F0K1', domains: ['gmail.com'], subject: 'Invoice' },
    token: t,
    tokenTtlMs: options.tokenTtlMs,
  })
  assert.equal((await store.record(input(newToken()))).status, 'ok')
  assert.equal((await store.record(input(token))).status, 'refused')
  assert.notEqual(await store.getDisabled(options.account), null)
  return token
}

/** A refused reply outcome. */
export type Refusal = Extract<ReplyOutcome, { result: 'refused' }>

/** The outcome as a refusal; any other outcome fails the test. */
export function refused(outcome: ReplyOutcome): Refusal {
  if (outcome.result !== 'refused') assert.fail(`refused, got ${JSON.stringify(outcome)}`)
  return outcome
}
