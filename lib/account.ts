const CONTROL_CHARS = /[\x00-\x1f\x7f]/g

/**
 * The account key for a login: control characters removed (as Haraka's auth_base stores
 * auth_user), surrounding white space trimmed, and lower-cased unless `lowercase` is false.
 */
export function normalizeAccount(login: string, lowercase = true): string {
  const cleaned = String(login).replace(CONTROL_CHARS, '').trim()
  return lowercase ? cleaned.toLowerCase() : cleaned
}
