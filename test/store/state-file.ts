// The memory store's state file as the tests read it back (lib/store/memory/index.ts writes it):
// only the parts the tests look at, typed.

import * as fs from 'node:fs'

import type { DisabledRecord } from '../../lib/store'

export interface StateFile {
  readonly version: number
  /** account -> its disable record */
  readonly disabled: Readonly<Record<string, DisabledRecord>>
  /** account -> held message id -> when to forget it */
  readonly held?: Readonly<Record<string, Readonly<Record<string, number>>>>
}

/** Parses the state file at `file`; fails unless it holds an object with a "disabled" object. */
export function readStateFile(file: string): StateFile {
  const state: unknown = JSON.parse(fs.readFileSync(file, 'utf8'))
  if (
    !state ||
    typeof state !== 'object' ||
    !('disabled' in state) ||
    !state.disabled ||
    typeof state.disabled !== 'object'
  ) {
    throw new Error(`${file} is not a state file: ${fs.readFileSync(file, 'utf8').slice(0, 200)}`)
  }
  return state as StateFile
}
