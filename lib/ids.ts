import { createHash, randomBytes } from 'node:crypto'

const ID_BYTES = 16
// Every message asks for ids (only the one that disables the account keeps them): drawing the
// CSPRNG's bytes 256 ids at a time keeps that cheap; each id is still 128 fresh random bits.
let pool = Buffer.alloc(0)
let offset = 0

/** A random identifier of 128 bits from the CSPRNG, as 32 hex characters. */
export function randomId(): string {
  if (offset + ID_BYTES > pool.length) {
    pool = randomBytes(ID_BYTES * 256)
    offset = 0
  }
  offset += ID_BYTES
  return pool.toString('hex', offset - ID_BYTES, offset)
}

/**
 * The SHA-256 (64 hex) of a reactivation token: what the stores keep instead of the token, so
 * that whoever reads Redis or the state file cannot re-enable an account with what they read.
 */
export function tokenDigest(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex')
}
