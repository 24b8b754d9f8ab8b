/**
 * The Redis store's Lua scripts, one file each: the source with its KEYS/ARGV/reply contract
 * header, the SHA computed from it, and the encoder (KEYS, ARGV) and decoder (typed result) beside it.
 */
import { AUTH_FAILURE } from './auth-failure'
import { DISABLE } from './disable'
import { DROP_HELD } from './drop-held'
import { ENABLE } from './enable'
import { REASSERT } from './reassert'
import { RECORD } from './record'
import { REDEEM } from './redeem'
import type { Script } from './script'

export type { Script, ScriptCall } from './script'
export type { ReassertReply } from './reassert'
export { AUTH_FAILURE, DISABLE, DROP_HELD, ENABLE, REASSERT, RECORD, REDEEM }

/** Every script, for loading and for the SHA test. */
export const SCRIPTS: readonly Script[] = [RECORD, DISABLE, ENABLE, REDEEM, DROP_HELD, REASSERT, AUTH_FAILURE]
