// Network definitions under <data>/networks (one JSON file each), their bridge devices,
// and host-local's allocations. No daemon: every tsrun process reads these files.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { TsrunError, UsageError } from '../errors.js';
import { parseIp, type Subnet } from './ipv4.js';
import { ipamDirOf, networksDir, NETWORK_NAME_RE, type NetworkDef } from './types.js';

const defFile = (data: string, name: string) => join(networksDir(data), `${name}.json`);

export function loadNetwork(data: string, name: string): NetworkDef | undefined {
  if (!NETWORK_NAME_RE.test(name)) return undefined;
  try {
    return JSON.parse(readFileSync(defFile(data, name), 'utf8')) as NetworkDef;
  } catch {
    return undefined;
  }
}

export function listNetworks(data: string): NetworkDef[] {
  const dir = networksDir(data);
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .filter((f) => f.endsWith('.json'))
    .map((f) => loadNetwork(data, f.slice(0, -5)))
    .filter((n): n is NetworkDef => n !== undefined)
    .sort((a, b) => a.name.localeCompare(b.name));
}

export function saveNetwork(data: string, def: NetworkDef): void {
  mkdirSync(networksDir(data), { recursive: true, mode: 0o700 });
  const tmp = `${defFile(data, def.name)}.${process.pid}.tmp`;
  writeFileSync(tmp, JSON.stringify(def, null, 2) + '\n', { mode: 0o600 });
  renameSync(tmp, defFile(data, def.name));
}

export function removeNetworkFiles(data: string, def: NetworkDef): void {
  rmSync(join(ipamDirOf(data), def.name), { recursive: true, force: true });
  rmSync(defFile(data, def.name), { force: true });
}

/** An allocated address: host-local writes one file per address, "CONTAINERID\r\nIFNAME". */
export interface Allocation {
  ip: string;
  containerId: string;
  ifname: string;
}

export function allocations(data: string, name: string): Allocation[] {
  const dir = join(ipamDirOf(data), name);
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .filter((f) => parseIp(f) !== undefined)
    .map((f) => {
      const [containerId = '', ifname = ''] = readFileSync(join(dir, f), 'utf8').split(/\r?\n/);
      return { ip: f, containerId: containerId.trim(), ifname: ifname.trim() };
    });
}

/** IPv4 subnets the host routes on its own devices (/proc/net/route: little-endian hex). */
export function hostRoutes(text = readRouteTable()): { subnet: Subnet; dev: string }[] {
  const out: { subnet: Subnet; dev: string }[] = [];
  for (const line of text.split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length < 8) continue;
    const le = (h: string) => Buffer.from(h, 'hex').readUInt32LE(0);
    const dest = le(f[1]!);
    const mask = le(f[7]!);
    if (mask === 0) continue; // the default route is not a subnet of the host
    const prefix = mask.toString(2).replace(/0+$/, '').length;
    out.push({ subnet: { base: dest, prefix }, dev: f[0]! });
  }
  return out;
}

function readRouteTable(): string {
  try {
    return readFileSync('/proc/net/route', 'utf8');
  } catch {
    return '';
  }
}

const IP_BIN = ['/usr/sbin/ip', '/sbin/ip', '/usr/bin/ip', '/bin/ip'];

/** iproute2's `ip`, the tool a learner would type; the error is its own one line. */
export function ipCommand(args: string[]): string {
  const bin = IP_BIN.find((p) => existsSync(p));
  if (!bin) throw new TsrunError('ip (iproute2) not found in /usr/sbin or /sbin: install package iproute2');
  try {
    return execFileSync(bin, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (e) {
    const err = ((e as { stderr?: string }).stderr ?? '').trim().split('\n')[0] || (e as Error).message;
    throw new TsrunError(`ip ${args.join(' ')}: ${err}`, { cause: e });
  }
}

export function bridgeExists(name: string): boolean {
  return existsSync(`/sys/class/net/${name}/bridge`);
}

/**
 * The network's bridge with its gateway address, up: what `network create` makes (and the
 * first container after a reboot remakes; the CNI bridge plugin would only make the device).
 */
export function ensureBridge(def: Pick<NetworkDef, 'name' | 'bridge' | 'subnet' | 'gateway' | 'internal'>): void {
  if (!bridgeExists(def.bridge)) {
    if (existsSync(`/sys/class/net/${def.bridge}`)) throw new UsageError(`network ${def.name}: device ${def.bridge} exists and is not a bridge`);
    try {
      ipCommand(['link', 'add', 'name', def.bridge, 'type', 'bridge']);
    } catch (e) {
      // another tsrun made it meanwhile
      if (!bridgeExists(def.bridge)) throw e;
    }
  }
  const prefix = def.subnet.split('/')[1];
  const hasGateway = () => ipCommand(['-4', '-o', 'addr', 'show', 'dev', def.bridge]).includes(` ${def.gateway}/${prefix} `);
  if (!hasGateway()) {
    try {
      ipCommand(['addr', 'add', `${def.gateway}/${prefix}`, 'dev', def.bridge]);
    } catch (e) {
      // several containers starting at once after a reboot: another tsrun added it first
      if (!hasGateway()) throw e;
    }
  }
  ipCommand(['link', 'set', def.bridge, 'up']);
  ensureMasquerade(def);
}

/** The host side of a network: its bridge and its masquerade rule. */
export function deleteBridge(def: NetworkDef): void {
  if (bridgeExists(def.bridge)) ipCommand(['link', 'del', def.bridge]);
  removeMasquerade(def);
}

const IPTABLES_BIN = ['/usr/sbin/iptables', '/sbin/iptables', '/usr/bin/iptables'];

function iptables(args: string[]): { ok: boolean; out: string; err: string } {
  const bin = IPTABLES_BIN.find((p) => existsSync(p));
  if (!bin) throw new TsrunError('iptables not found in /usr/sbin or /sbin: install package iptables');
  try {
    return { ok: true, out: execFileSync(bin, ['-w', ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }), err: '' };
  } catch (e) {
    return { ok: false, out: '', err: ((e as { stderr?: string }).stderr ?? '').trim().split('\n')[0] || (e as Error).message };
  }
}

/** docker's outbound NAT for a network: what leaves the subnet by another device than its bridge takes the host's address. */
function masqueradeRule(def: Pick<NetworkDef, 'name' | 'bridge' | 'subnet'>): string[] {
  return ['-t', 'nat', 'POSTROUTING', '-s', def.subnet, '!', '-o', def.bridge, '-m', 'comment', '--comment', `tsrun network ${def.name}`, '-j', 'MASQUERADE'];
}

/** The network's masquerade rule (idempotent: -C before -A); an --internal network has none. */
export function ensureMasquerade(def: Pick<NetworkDef, 'name' | 'bridge' | 'subnet' | 'internal'>): void {
  if (def.internal) return;
  const [t, nat, chain, ...rule] = masqueradeRule(def);
  if (iptables([t!, nat!, '-C', chain!, ...rule]).ok) return;
  const r = iptables([t!, nat!, '-A', chain!, ...rule]);
  if (!r.ok && !iptables([t!, nat!, '-C', chain!, ...rule]).ok) throw new TsrunError(`iptables -t nat -A POSTROUTING -s ${def.subnet} ! -o ${def.bridge} -j MASQUERADE: ${r.err}`);
}

export function removeMasquerade(def: Pick<NetworkDef, 'name' | 'bridge' | 'subnet'>): void {
  const [t, nat, chain, ...rule] = masqueradeRule(def);
  while (iptables([t!, nat!, '-C', chain!, ...rule]).ok) iptables([t!, nat!, '-D', chain!, ...rule]);
}

/**
 * The portmap plugin's shared chains (CNI-HOSTPORT-DNAT, -MASQ, -SETMARK and their jumps)
 * stay after its last DEL. When the last network goes and the DNAT chain holds no rule,
 * nobody uses them: remove them, so a host that tried tsrun is left as it was.
 */
export function removeIdlePortmapChains(): void {
  const dnat = iptables(['-t', 'nat', '-S', 'CNI-HOSTPORT-DNAT']);
  if (!dnat.ok || dnat.out.split('\n').some((l) => l.startsWith('-A '))) return;
  const jumps: string[][] = [
    ['PREROUTING', '-m', 'addrtype', '--dst-type', 'LOCAL', '-j', 'CNI-HOSTPORT-DNAT'],
    ['OUTPUT', '-m', 'addrtype', '--dst-type', 'LOCAL', '-j', 'CNI-HOSTPORT-DNAT'],
    ['POSTROUTING', '-m', 'comment', '--comment', 'CNI portfwd requiring masquerade', '-j', 'CNI-HOSTPORT-MASQ'],
  ];
  for (const [chain, ...rule] of jumps) while (iptables(['-t', 'nat', '-C', chain!, ...rule]).ok) iptables(['-t', 'nat', '-D', chain!, ...rule]);
  for (const c of ['CNI-HOSTPORT-DNAT', 'CNI-HOSTPORT-MASQ', 'CNI-HOSTPORT-SETMARK']) {
    iptables(['-t', 'nat', '-F', c]);
    iptables(['-t', 'nat', '-X', c]);
  }
}
