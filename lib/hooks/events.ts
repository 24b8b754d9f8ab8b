/**
 * The webhook from the Haraka process: each event goes out from the process that caused it, in
 * the background. One Webhook per config (a reload with a new [webhook] gets a new one); the
 * failure log and the counts belong to the process and outlive reloads.
 */
import type { Config } from '../config'
import type { HarakaPlugin } from '../haraka'
import { createWebhook, type Webhook, type WebhookEvent } from '../webhook'
import type { GuardState } from './state'

const webhooks = new WeakMap<Config, Webhook>()

function webhookOf(plugin: HarakaPlugin, state: GuardState): Webhook | null {
  const { config } = state
  if (!config.webhook) return null
  let webhook = webhooks.get(config)
  if (!webhook) {
    webhook = createWebhook({
      config: config.webhook,
      server: config.me,
      log: { info: (line) => plugin.loginfo(line), error: (line) => plugin.logerror(line) },
      failures: state.process.webhookFailures,
      stats: state.process.webhookStats,
    })
    webhooks.set(config, webhook)
  }
  return webhook
}

/** Sends `event` to [webhook] url in the background (nothing without a url); never throws, never waits. */
export function emitEvent(plugin: HarakaPlugin, state: GuardState, event: WebhookEvent): void {
  const webhook = webhookOf(plugin, state)
  if (webhook) void webhook.emit(event)
}

/** What a refused old password tells the webhook (see emitPasswordRefused). */
export interface PasswordRefusal {
  readonly account: string
  /** The incident whose password was refused. */
  readonly incident?: string
  /** The client's address. */
  readonly ip?: string
}

/**
 * The `password_refused` event: an AUTH the backend accepted was refused because it used the
 * password of the incident (issue 12 item 1). Call it from the AUTH hook where that refusal is
 * decided; it returns at once.
 */
export function emitPasswordRefused(plugin: HarakaPlugin, state: GuardState, refusal: PasswordRefusal): void {
  emitEvent(plugin, state, {
    event: 'password_refused',
    account: refusal.account,
    ...(refusal.incident !== undefined ? { incident: refusal.incident } : {}),
    reason: 'the password in use during the incident was not changed',
    via: 'auth',
    ...(refusal.ip ? { ip: refusal.ip } : {}),
  })
}
