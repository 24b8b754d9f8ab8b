/** Client networks: what the signals count as one source (IPv4 /24, IPv6 /48). */
import { BlockList, isIP } from 'node:net'

/** The client network of an address: IPv4 /24, IPv6 /48 (an IPv4-mapped IPv6 address counts as IPv4). */
export function networkOf(ip: string): string {
  const v4 = /^(?:::ffff:)?(\d+)\.(\d+)\.(\d+)\.\d+$/i.exec(ip)
  if (v4) return `${v4[1]}.${v4[2]}.${v4[3]}.0/24`
  if (!ip.includes(':')) return ip
  const [head = '', tail] = ip.toLowerCase().split('::')
  const left = head ? head.split(':') : []
  const right = tail ? tail.split(':') : []
  const groups =
    tail === undefined
      ? left
      : [...left, ...Array<string>(Math.max(0, 8 - left.length - right.length)).fill('0'), ...right]
  return `${groups
    .slice(0, 3)
    .map((g) => (g || '0').replace(/^0+(?=.)/, ''))
    .join(':')}::/48`
}

/** A CIDR (address/prefix) or a single address, with its family, or null when it is neither. */
function parseCidr(cidr: string): { address: string; prefix: number; family: 'ipv4' | 'ipv6' } | null {
  const [address = '', prefixText, extra] = cidr.trim().split('/')
  const version = isIP(address)
  if (version === 0 || extra !== undefined) return null
  const bits = version === 4 ? 32 : 128
  const prefix = prefixText === undefined ? bits : /^\d{1,3}$/.test(prefixText) ? Number(prefixText) : NaN
  if (!(prefix >= 0 && prefix <= bits)) return null
  return { address, prefix, family: version === 4 ? 'ipv4' : 'ipv6' }
}

/** Whether `cidr` is a network like 192.0.2.0/24 or 2001:db8::/32, or a single address. */
export function isNetwork(cidr: string): boolean {
  return parseCidr(cidr) !== null
}

const lists = new WeakMap<readonly string[], BlockList>()

/** Whether `ip` lies in one of `cidrs` (checked with isNetwork); an IPv4-mapped IPv6 address counts as IPv4. */
export function inNetworks(ip: string, cidrs: readonly string[]): boolean {
  if (cidrs.length === 0) return false
  let list = lists.get(cidrs)
  if (!list) {
    list = new BlockList()
    for (const cidr of cidrs) {
      const c = parseCidr(cidr)
      if (c) list.addSubnet(c.address, c.prefix, c.family)
    }
    lists.set(cidrs, list)
  }
  const v4 = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip)?.[1] ?? ip
  const version = isIP(v4)
  return version !== 0 && list.check(v4, version === 4 ? 'ipv4' : 'ipv6')
}
