// `tsrun network create` flags → a NetworkDef. Pure: the caller passes what is taken.
import { UsageError } from '../errors.js';
import { checkHostAddress, formatCidr, formatIp, overlaps, parseCidr, parseIp, pickSubnet, type Subnet } from './ipv4.js';
import { bridgeName, NETWORK_NAME_RE, type NetworkDef } from './types.js';

export interface CreateFlags {
  subnet?: string;
  gateway?: string;
  internal?: boolean;
  /** --icc=false / --icc=true (commander gives the string) */
  icc?: string | boolean;
  /** -o KEY=VALUE, docker's driver options */
  opt?: string[];
  driver?: string;
}

/** docker's name for the bridge driver's icc option (docker network create -o ...). */
export const ICC_OPTION = 'com.docker.network.bridge.enable_icc';

/** Names that mean something else to `run --network`. */
const RESERVED = ['none', 'host', 'bridge', 'default'];

function bool(flag: string, v: string): boolean {
  if (v === 'true' || v === '1') return true;
  if (v === 'false' || v === '0') return false;
  throw new UsageError(`${flag}: expected true or false, got ${JSON.stringify(v)}`);
}

export interface Taken {
  /** other tsrun networks */
  networks: NetworkDef[];
  /** subnets the host already routes (its own interfaces) */
  hostRoutes: { subnet: Subnet; dev: string }[];
}

export function defineNetwork(name: string, f: CreateFlags, taken: Taken, o: { id: string; now: string; defaultIcc: boolean }): NetworkDef {
  if (!NETWORK_NAME_RE.test(name)) throw new UsageError(`network name ${JSON.stringify(name)}: letters, digits, '_', '.', '-' (at most 64, starting with a letter or digit)`);
  if (RESERVED.includes(name)) throw new UsageError(`network name ${JSON.stringify(name)} is reserved (run --network ${name} means something else)`);
  if (taken.networks.some((n) => n.name === name)) throw new UsageError(`network ${name} already exists`);
  if (f.driver !== undefined && f.driver !== 'bridge') throw new UsageError(`--driver ${JSON.stringify(f.driver)}: only "bridge" is supported`);

  let icc = o.defaultIcc;
  const options: Record<string, string> = {};
  for (const kv of f.opt ?? []) {
    const eq = kv.indexOf('=');
    if (eq <= 0) throw new UsageError(`--opt ${JSON.stringify(kv)}: expected KEY=VALUE`);
    const k = kv.slice(0, eq);
    const v = kv.slice(eq + 1);
    if (k !== ICC_OPTION) throw new UsageError(`--opt ${JSON.stringify(k)}: not supported (tsrun knows ${ICC_OPTION})`);
    icc = bool(`--opt ${k}`, v);
    options[k] = v;
  }
  if (f.icc !== undefined) icc = typeof f.icc === 'boolean' ? f.icc : bool('--icc', f.icc);

  let subnet: Subnet;
  if (f.subnet !== undefined) {
    try {
      subnet = parseCidr(f.subnet);
    } catch (e) {
      throw new UsageError(`--subnet ${f.subnet}: ${(e as Error).message}`);
    }
  } else {
    const picked = pickSubnet([...taken.networks.map((n) => parseCidr(n.subnet)), ...taken.hostRoutes.map((r) => r.subnet)]);
    if (!picked) throw new UsageError('no free subnet left in 10.77.0.0/16: give one with --subnet');
    subnet = picked;
  }
  for (const n of taken.networks) {
    if (overlaps(parseCidr(n.subnet), subnet)) throw new UsageError(`--subnet ${formatCidr(subnet)} overlaps network ${n.name} (${n.subnet})`);
  }
  for (const r of taken.hostRoutes) {
    if (overlaps(r.subnet, subnet)) throw new UsageError(`--subnet ${formatCidr(subnet)} overlaps ${formatCidr(r.subnet)}, routed by the host on ${r.dev}`);
  }

  let gateway = (subnet.base + 1) >>> 0;
  if (f.gateway !== undefined) {
    const g = parseIp(f.gateway);
    if (g === undefined) throw new UsageError(`--gateway ${JSON.stringify(f.gateway)}: not an IPv4 address`);
    const bad = checkHostAddress(subnet, g);
    if (bad) throw new UsageError(`--gateway ${f.gateway}: ${bad}`);
    gateway = g;
  }
  if (icc === false) options[ICC_OPTION] ??= 'false';
  return {
    name,
    id: o.id,
    driver: 'bridge',
    subnet: formatCidr(subnet),
    gateway: formatIp(gateway),
    bridge: bridgeName(o.id),
    icc,
    internal: Boolean(f.internal),
    options,
    created: o.now,
  };
}

/** `run --ip`: a host address of the network that is not its gateway (allocation is checked by host-local). */
export function checkRequestedIp(def: NetworkDef, ip: string): void {
  const n = parseIp(ip);
  if (n === undefined) throw new UsageError(`--ip ${JSON.stringify(ip)}: not an IPv4 address`);
  const bad = checkHostAddress(parseCidr(def.subnet), n);
  if (bad) throw new UsageError(`--ip ${ip}: ${bad} (network ${def.name})`);
  if (ip === def.gateway) throw new UsageError(`--ip ${ip}: is the gateway of network ${def.name}`);
}
