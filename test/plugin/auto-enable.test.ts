// [reactivate] auto_enable_after through the compiled plugin's config and the memory store: an
// account a limit disabled long enough ago is enabled by itself, audited as `auto`, and the
// postmaster is told; one disabled by hand is not; the incident's password stays refused.

import assert from 'node:assert/strict'
import * as constants from 'haraka-constants'
import { autoEnableDue, autoEnableEveryMs } from '../../lib/hooks/auto-enable'
import type { GuardState } from '../../lib/hooks/state'
import type { HarakaPlugin } from '../../lib/haraka'
import { callHook, fixtureSession, guardStore, makeGuard, type Guard } from '../../support/plugin'
import { waitUntil } from '../../support/process'

const HOUR = 3_600_000

function guard(ini: string): Guard {
  return makeGuard(`[alert]\nto = postmaster@test.example\n[limits]\nmessages = 1/1m\n${ini}`)
}

const harakaOf = (g: Guard): HarakaPlugin => g.plugin as unknown as HarakaPlugin

function stateOf(g: Guard): GuardState {
  const { config, sendMail, process } = g.plugin.guard as unknown as GuardState
  return { config, store: guardStore(g.plugin), sendMail, process }
}

/** Two messages of `login`: the second goes over messages = 1/1m and disables the account. */
async function trip(g: Guard, login: string): Promise<number> {
  const send = async (): Promise<number | undefined> => {
    const c = fixtureSession({ login, relaying: true, mailFrom: login, rcptTo: ['x@out.example'] })
    return (await callHook(g.plugin, 'count_message', c)).rc
  }
  assert.equal(await send(), undefined)
  assert.equal(await send(), constants.deny)
  const record = await waitUntil(() => guardStore(g.plugin).getDisabled(login), { message: `${login} disabled` })
  return record.at
}

describe('plugin: [reactivate] auto_enable_after', function () {
  it('looks a quarter of the delay apart, between 1 s and 5 min', function () {
    assert.deepEqual([3000, 60_000, HOUR, 7 * 24 * HOUR].map(autoEnableEveryMs), [1000, 15_000, 300_000, 300_000])
  })

  it('enables an account a limit disabled that long ago, once, audited as auto, telling the postmaster', async function () {
    const g = guard('[reactivate]\nauto_enable_after = 1h\n')
    const at = await trip(g, 'alice@test.example')
    const store = guardStore(g.plugin)
    await store.disable({ account: 'bob@test.example', reason: 'phished', by: 'cli:root', incident: 'manual-1' })
    const s = stateOf(g)
    assert.deepEqual(await autoEnableDue(harakaOf(g), s, at + HOUR - 1), [], 'not yet')
    assert.deepEqual(await autoEnableDue(harakaOf(g), s, at + HOUR + 1000), ['alice@test.example'])
    assert.equal(await store.getDisabled('alice@test.example'), null)
    assert.notEqual(await store.getDisabled('bob@test.example'), null, 'a disable by hand stays')
    assert.deepEqual(await autoEnableDue(harakaOf(g), s, at + 2 * HOUR), [], 'once')
    const [entry] = await store.auditLog({ account: 'alice@test.example' })
    assert.deepEqual([entry?.action, entry?.actor, entry?.how], ['enable', 'auto', 'auto'])
    await waitUntil(
      () => g.sent.some((m) => /^Subject: Account alice@test\.example re-enabled automatically/m.test(m.message)),
      {
        message: 'the notice to the postmaster',
      },
    )
  })

  it('does nothing when off (the default)', async function () {
    const g = guard('')
    const at = await trip(g, 'alice@test.example')
    assert.deepEqual(await autoEnableDue(harakaOf(g), stateOf(g), at + 365 * 24 * HOUR), [])
    assert.notEqual(await guardStore(g.plugin).getDisabled('alice@test.example'), null)
  })
})
