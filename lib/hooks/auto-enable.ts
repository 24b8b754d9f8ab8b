/**
 * [reactivate] auto_enable_after: accounts a limit or signal disabled that long ago are enabled
 * again without an admin. Each Haraka process looks now and then; the store's enable is atomic,
 * so of several processes (or servers) one enables an account and writes its audit entry. The
 * password in use at the incident stays refused ([reactivate] require_new_password): an
 * automatic enable lets the owner in once the password has changed, not the attacker.
 */
import { errorText, shownAccount } from '../messages'
import { beginProbation } from '../reactivate/probation'
import { withTimeout } from '../store'
import { emitEvent } from './events'
import { cliCommand, notify } from './mailer'
import type { HarakaPlugin } from '../haraka'
import type { GuardState } from './state'

/** How often a process looks: a quarter of auto_enable_after, between 1 second and 5 minutes. */
export function autoEnableEveryMs(afterMs: number): number {
  return Math.min(Math.max(Math.floor(afterMs / 4), 1000), 300_000)
}

/**
 * Enables every account a limit disabled at least auto_enable_after ago (store clock against
 * `now`); answers the accounts this call enabled. A store failure is logged; the next look retries.
 */
export async function autoEnableDue(plugin: HarakaPlugin, state: GuardState, now = Date.now()): Promise<string[]> {
  const { config, store } = state
  const after = config.reactivate.autoEnableAfterMs
  if (after <= 0) return []
  const enabled: string[] = []
  try {
    const records = await withTimeout(store.listDisabled(), config.storeTimeoutMs * 10, 'auto enable: list')
    for (const r of records) {
      if (r.by !== 'limit' || r.at + after > now) continue
      // Looked at again just before: an account disabled again meanwhile (by hand) is left alone.
      const current = await withTimeout(store.getDisabled(r.account), config.storeTimeoutMs, 'auto enable: lookup')
      if (current?.incident !== r.incident || !(await store.enable(r.account))) continue
      enabled.push(r.account)
      const reason = `auto_enable_after: disabled ${Math.round((now - r.at) / 60_000)} min ago (incident ${r.incident})`
      plugin.lognotice(`ACCOUNT RE-ENABLED ${JSON.stringify(r.account)} automatically: ${reason}`)
      const probation = await beginProbation(store, config, r.account, now).catch(() => '')
      await store
        .audit({
          at: now,
          account: r.account,
          action: 'enable',
          actor: 'auto',
          how: 'auto',
          reason: probation ? `${reason}; ${probation}` : reason,
        })
        .catch((err: unknown) =>
          plugin.logerror(`audit entry for ${JSON.stringify(r.account)} not written: ${errorText(err)}`),
        )
      emitEvent(plugin, state, {
        event: 'enabled',
        account: r.account,
        incident: r.incident,
        via: 'auto',
        actor: 'auto',
        reason,
      })
      const pending =
        config.reactivate.requireNewPassword && (await store.oldPasswords(r.account).catch(() => [])).length > 0
      for (const to of config.alert.to) {
        void notify(plugin, state, to, '', `Account ${shownAccount(r.account)} re-enabled automatically`, [
          `The account ${shownAccount(r.account)} was disabled at incident ${r.incident} and has been`,
          `re-enabled automatically ([reactivate] auto_enable_after).`,
          '',
          ...(pending
            ? ['The password in use at the incident stays refused until it is changed.']
            : ['If its password was not changed yet, change it now.']),
          'To disable it again:',
          `  ${cliCommand('disable', r.account)}`,
        ])
      }
    }
  } catch (err) {
    plugin.logerror(`auto enable: ${errorText(err)}; will look again`)
  }
  return enabled
}
