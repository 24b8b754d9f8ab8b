import { randomBytes } from 'node:crypto'

/** A random identifier of 128 bits, as 32 hex characters. */
export function randomId(): string {
  return randomBytes(16).toString('hex')
}
