// IPv4 addresses and CIDR subnets as plain numbers: enough to validate what a user types
// for `network create --subnet/--gateway` and `run --ip`, and to find a free subnet.
// Pure (no kernel, no files): unit-tested in test/unit/network.test.ts.

export interface Subnet {
  /** network address as an unsigned 32-bit number */
  base: number;
  prefix: number;
}

const OCTET = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)$/;

/** "10.1.2.3" → number, or undefined when it is not a dotted quad (no leading zeros: they read as octal in inet_aton). */
export function parseIp(s: string): number | undefined {
  const parts = s.split('.');
  if (parts.length !== 4 || !parts.every((p) => OCTET.test(p))) return undefined;
  return parts.reduce((acc, p) => acc * 256 + Number(p), 0);
}

export function formatIp(n: number): string {
  return [24, 16, 8, 0].map((sh) => (n >>> sh) & 255).join('.');
}

function mask(prefix: number): number {
  return prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
}

/** "10.1.0.0/24" → Subnet; the error says what is wrong (the caller names the flag). */
export function parseCidr(s: string): Subnet {
  const m = /^([^/]+)\/(\d{1,2})$/.exec(s);
  if (!m) throw new Error(`${JSON.stringify(s)} is not a CIDR subnet (like 10.89.0.0/24)`);
  const ip = parseIp(m[1]!);
  if (ip === undefined) throw new Error(`${JSON.stringify(m[1])} is not an IPv4 address (only IPv4 networks are supported)`);
  const prefix = Number(m[2]);
  // a bridge network needs a gateway and at least one container address besides the
  // network and broadcast addresses: /30 is the smallest
  if (prefix < 8 || prefix > 30) throw new Error(`prefix /${prefix}: use /8 to /30 (a /30 holds the gateway and one container)`);
  const base = (ip & mask(prefix)) >>> 0;
  if (base !== ip) throw new Error(`${s} has host bits set: the subnet is ${formatIp(base)}/${prefix}`);
  return { base, prefix };
}

export function formatCidr(n: Subnet): string {
  return `${formatIp(n.base)}/${n.prefix}`;
}

export function broadcast(n: Subnet): number {
  return (n.base | ~mask(n.prefix)) >>> 0;
}

export function contains(n: Subnet, ip: number): boolean {
  return ((ip & mask(n.prefix)) >>> 0) === n.base;
}

/** An address a host on the subnet may use: inside it, neither its network nor its broadcast address. */
export function checkHostAddress(n: Subnet, ip: number): string | undefined {
  if (!contains(n, ip)) return `${formatIp(ip)} is outside the subnet ${formatCidr(n)}`;
  if (ip === n.base) return `${formatIp(ip)} is the network address of ${formatCidr(n)}`;
  if (ip === broadcast(n)) return `${formatIp(ip)} is the broadcast address of ${formatCidr(n)}`;
  return undefined;
}

export function overlaps(a: Subnet, b: Subnet): boolean {
  const p = Math.min(a.prefix, b.prefix);
  return ((a.base & mask(p)) >>> 0) === ((b.base & mask(p)) >>> 0);
}

/**
 * The first /24 in 10.77.0.0/16 that overlaps none of `taken` (the host's routes and the
 * other networks). Not Docker's 172.17+ nor podman's 10.88/10.89 pools, so tsrun's
 * networks do not collide with theirs on a machine that runs all three.
 */
export function pickSubnet(taken: Subnet[]): Subnet | undefined {
  for (let i = 0; i < 256; i++) {
    const cand = { base: (parseIp('10.77.0.0')! + i * 256) >>> 0, prefix: 24 };
    if (!taken.some((t) => overlaps(t, cand))) return cand;
  }
  return undefined;
}
