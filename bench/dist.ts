// The store's modules as built in dist/ (what the packed plugin ships), for the sections that
// drive the store directly. Loaded once, right after the plugin was packed: a later build by
// someone else empties dist/ for a moment.

import * as path from 'node:path'
import { REPO_ROOT } from '../support'
import type * as ConfigModule from '../lib/config'
import type * as KeysModule from '../lib/store/keys'
import type * as RedisStoreModule from '../lib/store/redis'

export interface Dist {
  readonly createRedisStore: typeof RedisStoreModule.createRedisStore
  readonly parseConfig: typeof ConfigModule.parseConfig
  readonly accountKeys: typeof KeysModule.accountKeys
}

/** The raw ini parseConfig takes. */
export type RawIni = Parameters<typeof ConfigModule.parseConfig>[0]

export async function loadDist(): Promise<Dist> {
  const lib = (name: string): string => path.join(REPO_ROOT, 'dist', 'lib', name)
  const store = (await import(lib('store/redis'))) as typeof RedisStoreModule
  const config = (await import(lib('config'))) as typeof ConfigModule
  const keys = (await import(lib('store/keys'))) as typeof KeysModule
  return { createRedisStore: store.createRedisStore, parseConfig: config.parseConfig, accountKeys: keys.accountKeys }
}

/** A store logger that shows only errors. */
export const quietLog = {
  info(): void {},
  warn(): void {},
  error(m: string): void {
    console.error(`store: ${m}`)
  },
}
