/**
 * Who an account is: the canonical identity of a login ([accounts] in hijack-guard.ini). Every
 * place that names an account (counting, the disabled flag, the AUTH gate, MAIL FROM,
 * exemptions, [account:LOGIN] sections, [reactivate] admins, the CLI) goes through
 * canonicalAccount, so every spelling of one mailbox is one account.
 */
import { domainToASCII } from 'node:url'
import { replaceControlChars } from './text'

/** nfkc: Unicode NFKC + case folding; lower: ASCII lower-case; none: as typed. */
export type Fold = 'nfkc' | 'lower' | 'none'

export interface AccountsConfig {
  readonly fold: Fold
  /** Canonical domain a login without "@" is put in; '' for none. */
  readonly defaultDomain: string
  /** Canonical alias domain -> canonical domain it stands for. */
  readonly domainAliases: ReadonlyMap<string, string>
  /** True: an XCLIENT LOGIN (connection.remote.login) is the session's login. */
  readonly xclientLogin: boolean
}

/** The [accounts] defaults. */
export const DEFAULT_ACCOUNTS: AccountsConfig = Object.freeze({
  fold: 'nfkc',
  defaultDomain: '',
  domainAliases: new Map<string, string>(),
  xclientLogin: false,
})

// Zero-width and other default-ignorable characters (as Unicode's NFKC_Casefold drops them).
const IGNORABLE = /\p{Default_Ignorable_Code_Point}/gu

function foldText(s: string, fold: Fold): string {
  switch (fold) {
    case 'nfkc':
      // Upper then lower case approximates full case folding ("ß" and "SS" meet in "ss");
      // NFKC before and after joins fullwidth, compatibility and decomposed forms.
      return s.normalize('NFKC').replace(IGNORABLE, '').toUpperCase().toLowerCase().normalize('NFKC')
    case 'lower':
      return s.replace(/[A-Z]+/g, (m) => m.toLowerCase())
    case 'none':
      return s
  }
}

/**
 * A domain as compared: lower-cased under every fold (DNS names are case-insensitive), one
 * trailing dot dropped, an internationalised name in its ASCII (xn--) form when it has one.
 */
export function canonicalDomain(domain: string, fold: Fold = 'nfkc'): string {
  const d = foldText(replaceControlChars(domain, '').trim(), fold).toLowerCase().replace(/\.$/, '')
  if (d === '') return ''
  const ascii = /^[\x21-\x7e]*$/.test(d) ? d : domainToASCII(d)
  return ascii || d
}

/**
 * The canonical account of a login: control characters removed, folded as [accounts] fold
 * says, trimmed; a login without "@" put in default_domain; the domain part (after the last
 * "@") lower-cased and mapped through domain_aliases. Pure; '' stays ''.
 */
export function canonicalAccount(login: string, accounts: AccountsConfig = DEFAULT_ACCOUNTS): string {
  const cleaned = foldText(replaceControlChars(String(login), ''), accounts.fold).trim()
  if (cleaned === '') return ''
  const at = cleaned.lastIndexOf('@')
  if (at === -1) return accounts.defaultDomain ? `${cleaned}@${accounts.defaultDomain}` : cleaned
  const local = cleaned.slice(0, at)
  const domain = canonicalDomain(cleaned.slice(at + 1), accounts.fold)
  return `${local}@${accounts.domainAliases.get(domain) ?? domain}`
}
