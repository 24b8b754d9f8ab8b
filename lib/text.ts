/** Small text facts the plugin uses in several places, each written once. */

/** C0 and C1 control characters and DEL, as the body of a character class: no login, address or header text keeps one. */
export const CONTROL = '\\x00-\\x1f\\x7f-\\x9f'

const HAS_CONTROL = new RegExp(`[${CONTROL}]`)
const EVERY_CONTROL = new RegExp(`[${CONTROL}]`, 'g')

/** True when `s` holds a control character. */
export function hasControlChars(s: string): boolean {
  return HAS_CONTROL.test(s)
}

/** `s` with every control character replaced by `by`. */
export function replaceControlChars(s: string, by: string): string {
  // replace() starts a global expression at 0 and leaves it there: one compiled expression serves every call.
  return s.replace(EVERY_CONTROL, by)
}

/** "2026-11-28 04:45:31 UTC": a time as the alert, the CLI and the log show it. */
export function utc(ms: number): string {
  return new Date(ms)
    .toISOString()
    .replace('T', ' ')
    .replace(/\.\d+Z$/, ' UTC')
}

/** "Sat, 28 Nov 2026 04:45:31 +0000": an RFC 5322 Date header value. */
export function rfc5322Date(ms: number): string {
  return new Date(ms).toUTCString().replace('GMT', '+0000')
}

/** What a header is read from: Haraka's transaction header (get_decoded may throw on bad encodings). */
export interface HeaderSource {
  get(name: string): string
  get_decoded(name: string): string
}

/** A header's value, decoded (RFC 2047) where it can be, raw where decoding fails; '' when absent. */
export function decodedHeader(header: HeaderSource, name: string): string {
  try {
    return String(header.get_decoded(name) ?? '')
  } catch {
    return String(header.get(name) ?? '')
  }
}
