/** Client networks: what the signals count as one source (IPv4 /24, IPv6 /48). */

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
