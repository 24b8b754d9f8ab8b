// The part of haraka-test-fixtures (which ships no types) that support/plugin.ts and the plugin
// tests use.

declare module 'haraka-test-fixtures' {
  /** A fixtures Plugin: Haraka's plugin object, with the loaded plugin's exports on it. */
  interface FixturePlugin {
    name: string
    config: { module_config(defaults: string, overrides?: string): FixturePlugin['config'] }
    register(): void
    register_hook(hook: string, method: string, priority?: number): void
    [member: string]: unknown
  }

  interface FixtureAddress {
    user: string | null
    host: string | null
    /** user@host (a getter of @haraka/email-address's Address) */
    readonly address: string
  }

  interface FixtureTransaction {
    uuid: string
    notes: Record<string, unknown>
    mail_from: FixtureAddress | null
    rcpt_to: FixtureAddress[]
    results: unknown
    add_header(name: string, value: string): void
    [member: string]: unknown
  }

  /** A fixtures Connection (with a transaction when mailFrom, rcptTo or txNotes is given). */
  interface FixtureConnection {
    uuid: string
    notes: Record<string, unknown>
    remote: { ip?: string; host?: string; login?: string }
    hello: { host?: string; verb?: string }
    relaying: boolean
    transaction: FixtureTransaction | null
    results: unknown
    [member: string]: unknown
  }

  interface ConnectionOptions {
    ip?: string
    withTxn?: boolean
    relaying?: boolean
    helo?: string
    host?: string
    mailFrom?: string
    rcptTo?: readonly string[]
    notes?: Record<string, unknown>
    txNotes?: Record<string, unknown>
    silent?: boolean
  }

  /** What a plugin added to connection.results (or transaction.results). */
  interface FixtureResult {
    pass: string[]
    fail: string[]
    skip: string[]
    err: string[]
    msg: string[]
    [key: string]: unknown
  }

  export function makePlugin(name: string, options?: { register?: boolean; configDir?: string }): FixturePlugin
  export function makeConnection(options?: ConnectionOptions): FixtureConnection
  export function getResult(target: { results: unknown }, plugin: FixturePlugin | string): FixtureResult
}
