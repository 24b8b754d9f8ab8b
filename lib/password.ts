/**
 * The password of a hijacked session, kept only as a slow salted hash ([reactivate]
 * require_new_password): scrypt from node:crypto, a random salt per record, the parameters stored
 * with the hash so a later change of them still checks older records. The password itself is
 * never stored, logged or compared in the clear.
 */
import { randomBytes, scrypt, timingSafeEqual, type ScryptOptions } from 'node:crypto'

/** A hash of a password that was in use when its account was disabled. */
export interface PasswordHash {
  /** `scrypt:N=<cost>,r=<blockSize>,p=<parallelization>,len=<bytes>` */
  readonly params: string
  /** Random, 16 bytes, hex. */
  readonly salt: string
  /** The scrypt output, hex. */
  readonly hash: string
  /** Store-clock ms of the disable it was taken at. */
  readonly at: number
  /** The incident of that disable. */
  readonly incident: string
}

/** scrypt's cost: 2^15, r = 8, p = 1 take about 32 MiB and tens of milliseconds, off the event loop. */
const COST = { N: 32_768, r: 8, p: 1 }
const LENGTH = 32
const MAX_MEM = 64 * 1024 * 1024

function derive(password: string, salt: Buffer, options: ScryptOptions, length: number): Promise<Buffer> {
  return new Promise((resolve, reject) =>
    scrypt(password.normalize('NFC'), salt, length, { ...options, maxmem: MAX_MEM }, (err, key) =>
      err ? reject(err) : resolve(key),
    ),
  )
}

/** The hash of `password` for a disable at `at` (incident `incident`). */
export async function hashPassword(password: string, at: number, incident: string): Promise<PasswordHash> {
  const salt = randomBytes(16)
  const key = await derive(password, salt, COST, LENGTH)
  return {
    params: `scrypt:N=${COST.N},r=${COST.r},p=${COST.p},len=${LENGTH}`,
    salt: salt.toString('hex'),
    hash: key.toString('hex'),
    at,
    incident,
  }
}

const PARAMS = /^scrypt:N=(\d+),r=(\d+),p=(\d+),len=(\d+)$/

/** Whether `password` is the one `record` was made from; false for a record this code cannot read. */
export async function samePassword(record: PasswordHash, password: string): Promise<boolean> {
  const m = PARAMS.exec(record.params)
  if (!m || !/^[0-9a-f]{32}$/.test(record.salt) || !/^[0-9a-f]+$/.test(record.hash)) return false
  const [N, r, p, len] = m.slice(1).map(Number) as [number, number, number, number]
  if (len !== record.hash.length / 2 || len < 16 || len > 64 || N > 1 << 20 || r > 32 || p > 16) return false
  const key = await derive(password, Buffer.from(record.salt, 'hex'), { N, r, p }, len)
  return timingSafeEqual(key, Buffer.from(record.hash, 'hex'))
}

/** A PasswordHash from parsed JSON, or nothing when the shape is wrong. */
export function toPasswordHash(row: unknown): PasswordHash[] {
  if (!row || typeof row !== 'object') return []
  const r = row as Record<string, unknown>
  const { params, salt, hash, incident } = r
  if (typeof params !== 'string' || typeof salt !== 'string' || typeof hash !== 'string') return []
  return [{ params, salt, hash, at: Number(r.at) || 0, incident: typeof incident === 'string' ? incident : '' }]
}
