// A user-defined bridge network (`tsrun network create`), as stored in
// <data>/networks/NAME.json, and the pure mapping of it to a CNI network configuration.
// The CNI plugins (containernetworking-plugins: bridge + host-local) do the kernel work;
// tsrun only decides what to ask for.
import { posix } from 'node:path';
import type { PortMapping } from './ports.js';

export interface NetworkDef {
  name: string;
  /** 64 hex digits, as docker's network ids */
  id: string;
  driver: 'bridge';
  /** IPv4 CIDR, e.g. 10.77.0.0/24 */
  subnet: string;
  /** the bridge's own address: the host side of the network */
  gateway: string;
  /** the Linux bridge device (IFNAMSIZ: at most 15 characters) */
  bridge: string;
  /** inter-container communication: false isolates every container's bridge port */
  icc: boolean;
  /** docker's --internal: no default route and no NAT, the subnet and the gateway only; otherwise outbound traffic is masqueraded (docker's default) */
  internal: boolean;
  /** docker's -o options as given */
  options: Record<string, string>;
  created: string;
}

/** What the network control needs to attach a container (resolved by the CLI from the data dir). */
export interface NetworkAttachment {
  def: NetworkDef;
  /** --ip: a fixed address instead of host-local's next free one */
  ip?: string;
  /** the CNI plugin directory (CNI_PATH: bridge calls host-local from there) */
  cniPath: string;
  /** host-local's dataDir: one file per allocated address, under a lock per network */
  ipamDir: string;
  /** the names every member of the network knows it by, in /etc/hosts: the hostname, --name, --network-alias, the short id */
  hostnames: string[];
  /** -p / -P: host ports forwarded to the container (CNI portmap) */
  ports?: PortMapping[];
}

export const CNI_VERSION = '1.0.0';

export const bridgeName = (id: string) => `tsbr-${id.slice(0, 10)}`;

/**
 * The CNI network configuration for one container (CNI spec 1.0, "Network configuration").
 * A network that is not --internal routes to the outside as docker's do: isDefaultGateway
 * gives the container a default route through the bridge (and, as isGateway, has the plugin
 * write 1 to the host's net.ipv4.ip_forward, as dockerd does at start). The masquerade is the network's,
 * one rule made with the bridge (src/network/store.ts), as docker's is: the plugin's own
 * ipMasq rule per container is removed only by a DEL that still has the container's netns,
 * and tsrun's DEL runs after the netns is gone. An --internal network gets neither: its
 * containers reach their subnet and the gateway, nothing beyond. hairpinMode lets a
 * container reach its own published port through the host's address.
 */
export function cniConfig(a: Pick<NetworkAttachment, 'def' | 'ip' | 'ipamDir'>): Record<string, unknown> {
  const { def } = a;
  const routed = !def.internal;
  return {
    cniVersion: CNI_VERSION,
    name: def.name,
    type: 'bridge',
    bridge: def.bridge,
    isGateway: routed,
    isDefaultGateway: routed,
    ipMasq: false,
    hairpinMode: true,
    ipam: {
      type: 'host-local',
      ranges: [[{ subnet: def.subnet, gateway: def.gateway }]],
      dataDir: a.ipamDir,
    },
    // host-local reads requested addresses from args.cni.ips (CNI conventions, "args")
    ...(a.ip ? { args: { cni: { ips: [a.ip] } } } : {}),
  };
}

export const networksDir = (data: string) => posix.join(data, 'networks');
export const ipamDirOf = (data: string) => posix.join(networksDir(data), 'ipam');

export const NETWORK_NAME_RE = /^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,63}$/;

/** the user-defined network a container is attached to (a spec annotation): `network rm` and `network inspect` read it */
export const NETWORK_ANNOTATION = 'tsrun.network';

/**
 * The portmap plugin's configuration, chained after bridge (CNI spec 1.0, "Network
 * configuration lists": the previous plugin's result is `prevResult`). `snat` masquerades
 * hairpin and localhost-originated traffic, so 127.0.0.1:PORT works from the host.
 */
export function portmapConfig(def: NetworkDef, ports: PortMapping[], prevResult?: unknown): Record<string, unknown> {
  return {
    cniVersion: CNI_VERSION,
    name: def.name,
    type: 'portmap',
    capabilities: { portMappings: true },
    snat: true,
    runtimeConfig: { portMappings: ports },
    ...(prevResult ? { prevResult } : {}),
  };
}
