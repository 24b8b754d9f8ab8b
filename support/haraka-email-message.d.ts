// The part of haraka-email-message (which ships no types) that the tests use to read a message
// the way Haraka reads it: Header parses and decodes header fields, Body decodes the parts.

declare module 'haraka-email-message' {
  import type { Address, Group } from '@haraka/email-address'

  class Header {
    /** Lower-cased field name -> raw values, in order. */
    readonly headers: Record<string, string[]>
    /** Parses header lines, each ending with its line end; folded lines continue a field. */
    parse(lines: readonly string[]): void
    /** The raw values of a field joined by "\n", '' when absent. */
    get(name: string): string
    /** The RFC 2047/2231-decoded values of a field joined by "\n", '' when absent. */
    get_decoded(name: string): string
    /** The parsed addresses of an address field, [] when absent; throws on malformed input. */
    get_addresses(name: string): Array<Address | Group>
  }

  class Body {
    constructor(header?: Header)
    readonly header: Header
    /** The decoded text of this part (a text part only). */
    readonly bodytext: string
    /** The parts of a multipart body. */
    readonly children: Body[]
    /** Feeds one body line, with its line end. */
    parse_more(line: string): void
    parse_end(): void
  }
}
