// `-p [HOST_IP:][HOST_PORT]:CONTAINER_PORT[/tcp|udp]` and `-P` (docker run's port
// publishing) → the CNI portmap plugin's `portMappings` (CNI conventions, "Port mappings").
// The plugin writes the DNAT rules (iptables nat table, chains CNI-HOSTPORT-* and CNI-DN-*);
// tsrun only decides which ports. Pure apart from reading /proc/net for ports in use.
import { readFileSync } from 'node:fs';
import { UsageError } from '../errors.js';
import { parseIp } from './ipv4.js';

export interface PortMapping {
  /** "" = every host address (docker's 0.0.0.0) */
  hostIP: string;
  hostPort: number;
  containerPort: number;
  protocol: 'tcp' | 'udp';
}

/** A mapping asked for, before a free host port is picked for `-p 80` / `-P`. */
export interface PortRequest extends Omit<PortMapping, 'hostPort'> {
  /** 0: pick a free one (docker's ephemeral range) */
  hostPort: number;
  /** the flag as given, for messages */
  flag: string;
}

function port(flag: string, what: string, v: string): number {
  if (!/^\d{1,5}$/.test(v) || Number(v) < 1 || Number(v) > 65535) throw new UsageError(`${flag}: ${what} ${JSON.stringify(v)} is not a port (1-65535)${v.includes('-') ? '; port ranges are not supported' : ''}`);
  return Number(v);
}

/** One `-p` value, docker's syntax: `80`, `8080:80`, `127.0.0.1:8080:80`, `127.0.0.1::80`, `…/udp`. */
export function parsePublish(value: string): PortRequest {
  const flag = `-p ${value}`;
  const slash = value.lastIndexOf('/');
  const proto = slash >= 0 ? value.slice(slash + 1) : 'tcp';
  if (proto !== 'tcp' && proto !== 'udp') throw new UsageError(`${flag}: protocol ${JSON.stringify(proto)} (tcp or udp)`);
  const body = slash >= 0 ? value.slice(0, slash) : value;
  if (body.includes('[')) throw new UsageError(`${flag}: IPv6 host addresses are not supported (tsrun networks are IPv4)`);
  const parts = body.split(':');
  if (parts.length > 3) throw new UsageError(`${flag}: expected [HOST_IP:][HOST_PORT:]CONTAINER_PORT[/tcp|udp]`);
  const containerPort = port(flag, 'container port', parts.at(-1)!);
  const hostPortText = parts.length >= 2 ? parts.at(-2)! : '';
  const hostIP = parts.length === 3 ? parts[0]! : '';
  if (hostIP !== '' && hostIP !== '0.0.0.0' && parseIp(hostIP) === undefined) throw new UsageError(`${flag}: host address ${JSON.stringify(hostIP)} is not an IPv4 address`);
  return { hostIP: hostIP === '0.0.0.0' ? '' : hostIP, hostPort: hostPortText === '' ? 0 : port(flag, 'host port', hostPortText), containerPort, protocol: proto, flag };
}

/** `-P`: every port the image EXPOSEs ("80/tcp": {}), each on a free host port of every address. */
export function publishAll(exposed: Record<string, unknown> | undefined | null): PortRequest[] {
  return Object.keys(exposed ?? {}).map((k) => {
    const [p = '', proto = 'tcp'] = k.split('/');
    return parsePublish(`${p}/${proto}`);
  });
}

/** Ports something on the host listens on (tcp) or is bound to (udp), from /proc/net. */
export function portsInUse(read: (path: string) => string = (p) => readFileSync(p, 'utf8')): Set<string> {
  const used = new Set<string>();
  for (const [file, proto] of [['/proc/net/tcp', 'tcp'], ['/proc/net/tcp6', 'tcp'], ['/proc/net/udp', 'udp'], ['/proc/net/udp6', 'udp']] as const) {
    let text: string;
    try {
      text = read(file);
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length < 4) continue;
      // tcp: st 0A = LISTEN; udp: any bound socket
      if (proto === 'tcp' && f[3] !== '0A') continue;
      used.add(`${proto}/${parseInt(f[1]!.split(':')[1]!, 16)}`);
    }
  }
  return used;
}

/** docker's default ephemeral range for -P and `-p CONTAINER_PORT` (net.ipv4.ip_local_port_range). */
export const EPHEMERAL = { first: 32768, last: 60999 };

/**
 * Host ports for the requests: a fixed one must be free (docker: "port is already
 * allocated"); a 0 gets the next free port of the ephemeral range. `taken` holds
 * "proto/port" of other containers' mappings and of host sockets.
 */
export function assignPorts(reqs: PortRequest[], taken: Set<string>, start = EPHEMERAL.first + Math.floor(Math.random() * 1000)): PortMapping[] {
  const used = new Set(taken);
  const out: PortMapping[] = [];
  for (const r of reqs) {
    let hostPort = r.hostPort;
    if (hostPort === 0) {
      const span = EPHEMERAL.last - EPHEMERAL.first + 1;
      let found = 0;
      for (let i = 0; i < span && !found; i++) {
        const p = EPHEMERAL.first + ((start - EPHEMERAL.first + i) % span);
        if (!used.has(`${r.protocol}/${p}`)) found = p;
      }
      if (!found) throw new UsageError(`${r.flag}: no free host port left in ${EPHEMERAL.first}-${EPHEMERAL.last}`);
      hostPort = found;
    } else if (used.has(`${r.protocol}/${hostPort}`)) {
      throw new UsageError(`${r.flag}: host port ${hostPort}/${r.protocol} is already in use (EADDRINUSE): another container publishes it or a host program listens on it`);
    }
    used.add(`${r.protocol}/${hostPort}`);
    out.push({ hostIP: r.hostIP, hostPort, containerPort: r.containerPort, protocol: r.protocol });
  }
  return out;
}

/** docker's text form, as `docker port` prints it: `80/tcp -> 127.0.0.1:8080`. */
export function formatMapping(m: PortMapping): string {
  return `${m.containerPort}/${m.protocol} -> ${m.hostIP || '0.0.0.0'}:${m.hostPort}`;
}

/** docker inspect's NetworkSettings.Ports: {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8080"}]}. */
export function inspectPorts(ms: PortMapping[]): Record<string, { HostIp: string; HostPort: string }[]> {
  const out: Record<string, { HostIp: string; HostPort: string }[]> = {};
  for (const m of ms) (out[`${m.containerPort}/${m.protocol}`] ??= []).push({ HostIp: m.hostIP || '0.0.0.0', HostPort: String(m.hostPort) });
  return out;
}

/** the container's mappings (a spec annotation, so inspect, `port` and the next run see them) */
export const PORTS_ANNOTATION = 'tsrun.ports';

/** A container's published ports, from its annotation (a damaged one reads as none). */
export function publishedPorts(s: { annotations?: Record<string, string> }): PortMapping[] {
  try {
    const v = JSON.parse(s.annotations?.[PORTS_ANNOTATION] ?? '[]') as unknown;
    return Array.isArray(v) ? (v as PortMapping[]).filter((m) => Number.isInteger(m?.hostPort) && Number.isInteger(m?.containerPort)) : [];
  } catch {
    return [];
  }
}
