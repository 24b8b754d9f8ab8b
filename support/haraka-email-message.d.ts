// The part of haraka-email-message (which ships no types; it comes with haraka-test-fixtures)
// that the plugin tests use to read the header of the mail the plugin sends.

declare module 'haraka-email-message' {
  import type { Address, Group } from '@haraka/email-address'

  export class Header {
    /** Parses header lines, each ending in its line break. */
    parse(lines: readonly string[]): void
    get(key: string): string
    get_decoded(key: string): string
    /** The parsed addresses of an address header (From, To, Reply-To, ...); [] when it is missing. */
    get_addresses(key: string): Array<Address | Group>
  }
}
