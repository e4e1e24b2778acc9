// Calling CNI plugins (CNI spec 1.0, "Execution protocol"): the plugin binary gets the
// operation in CNI_* environment variables and the network configuration on stdin, and
// answers with a JSON result (or an error object) on stdout. tsrun uses Debian's
// containernetworking-plugins: `bridge` (veth pair, one end in the container's netns as
// eth0, the other a port of the bridge) with `host-local` (file-per-address IPAM under a lock).
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { TsrunError, UsageError } from '../errors.js';
import type { ParentAction } from '../plan/types.js';
import { joinNames, leaveNames } from './names.js';

export const DEFAULT_CNI_PATH = '/usr/lib/cni:/opt/cni/bin';

/** The directory of the first CNI_PATH entry that has every plugin, or a one-line error. */
export function findCniDir(cniPath: string, plugins: string[]): string {
  const dirs = cniPath.split(':').filter(Boolean);
  const dir = dirs.find((d) => plugins.every((p) => existsSync(join(d, p))));
  if (!dir) {
    const missing = plugins.filter((p) => !dirs.some((d) => existsSync(join(d, p))));
    throw new UsageError(`CNI plugin ${missing.join(', ') || plugins.join(', ')} not found in ${dirs.join(', ')} (ENOENT): install package containernetworking-plugins, or set TSRUN_CNI_PATH`);
  }
  return dir;
}

type CniAction = Extract<ParentAction, { action: 'cni' }>;
type PortAction = Extract<ParentAction, { action: 'bridge-port' }>;
type NamesAction = Extract<ParentAction, { action: 'network-names' }>;

interface AddResult {
  interfaces?: { name: string; mac?: string; sandbox?: string }[];
  ips?: { address: string; gateway?: string; interface?: number }[];
}

/** What each ADD in this process returned, by container id: the isolation step needs the host-side veth. */
const added = new Map<string, { hostVeth?: string; ip?: string; result?: unknown }>();

export function addedFor(containerId: string): { hostVeth?: string; ip?: string } | undefined {
  return added.get(containerId);
}

function callPlugin(a: CniAction, netns: string | undefined): string {
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin',
    CNI_COMMAND: a.command,
    CNI_CONTAINERID: a.containerId,
    CNI_IFNAME: a.ifname,
    CNI_PATH: a.cniPath,
    ...(netns ? { CNI_NETNS: netns } : {}),
  };
  try {
    return execFileSync(join(a.cniPath, a.plugin), [], { input: JSON.stringify(a.config), env, encoding: 'utf8', stdio: ['pipe', 'pipe', 'pipe'] });
  } catch (e) {
    const x = e as { stdout?: string; stderr?: string; code?: string };
    if (x.code === 'ENOENT' || x.code === 'EACCES') throw new TsrunError(`CNI ${a.command} ${join(a.cniPath, a.plugin)}: ${x.code}`, { cause: e });
    let msg = (x.stderr ?? '').trim().split('\n')[0] || (e as Error).message;
    try {
      const err = JSON.parse(x.stdout ?? '') as { code?: number; msg?: string; details?: string };
      msg = [err.msg, err.details].filter(Boolean).join(': ') + (err.code !== undefined ? ` (CNI error code ${err.code})` : '');
    } catch {
      /* not a CNI error object: keep stderr */
    }
    throw new TsrunError(`network ${String(a.config.name)}: CNI ${a.command} (${a.plugin}): ${msg}`, { cause: e });
  }
}

/**
 * ADD: the container's netns is /proc/<pid>/ns/net (the init waits for GO, so it exists).
 * DEL: without CNI_NETNS. It runs once the container has exited, when its netns (and the
 * veth pair with it) is already gone; a recycled pid would make /proc/<pid>/ns/net some
 * other process's netns — possibly the host's, where the plugin would delete "eth0".
 * host-local releases the address by container id, which needs no netns (CNI spec: DEL
 * must succeed when resources are already gone).
 */
export function runCniAction(a: CniAction, pid?: number): void {
  if (a.command === 'DEL') {
    // no allocation directory: nothing to release (the network was removed since, with its
    // addresses); calling host-local would only make the directory again
    const ipam = a.config.ipam as { dataDir?: string } | undefined;
    if (ipam?.dataDir && !existsSync(join(ipam.dataDir, String(a.config.name)))) {
      added.delete(a.containerId);
      return;
    }
    callPlugin(a, undefined);
    added.delete(a.containerId);
    return;
  }
  if (!pid) throw new TsrunError(`CNI ADD needs the container's pid`);
  if (a.plugin === 'portmap') {
    // chained after bridge: it gets bridge's result as prevResult (CNI spec, "Chained plugins")
    const prev = added.get(a.containerId)?.result;
    if (!prev) throw new TsrunError(`network ${String(a.config.name)}: portmap needs the bridge plugin's result (CNI ADD of bridge did not run)`);
    callPlugin({ ...a, config: { ...a.config, prevResult: prev } }, `/proc/${pid}/ns/net`);
    return;
  }
  const out = callPlugin(a, `/proc/${pid}/ns/net`);
  let res: AddResult;
  try {
    res = JSON.parse(out) as AddResult;
  } catch (e) {
    throw new TsrunError(`network ${String(a.config.name)}: CNI ADD (${a.plugin}) printed no JSON result`, { cause: e });
  }
  const bridge = String(a.config.bridge);
  const hostVeth = res.interfaces?.find((i) => !i.sandbox && i.name !== bridge)?.name;
  const ip = res.ips?.[0]?.address.split('/')[0];
  added.set(a.containerId, { ...(hostVeth ? { hostVeth } : {}), ...(ip ? { ip } : {}), result: res });
}

/** The container's name in the network's hosts files (join after bridge's ADD gave it an address), or out of them. */
export function runNamesAction(a: NamesAction): void {
  if (a.command === 'leave') {
    leaveNames(a.netDir, a.network, a.containerId);
    return;
  }
  const ip = added.get(a.containerId)?.ip;
  if (!ip) throw new TsrunError(`network ${a.network}: no address recorded for container ${a.containerId.slice(0, 12)} (CNI ADD did not report one)`);
  joinNames(a.netDir, a.network, { containerId: a.containerId, ip, names: a.names ?? [], hostsFile: a.hostsFile ?? '' });
}

const BRIDGE_BIN = ['/usr/sbin/bridge', '/sbin/bridge', '/usr/bin/bridge', '/bin/bridge'];

/**
 * bridge(8) `link set dev VETH isolated on`: the kernel's bridge port isolation
 * (BR_ISOLATED, Linux 4.18). The bridge never forwards a frame from one isolated port to
 * another; an isolated port still talks to non-isolated ports and to the bridge device
 * itself (the gateway address, the host side).
 */
export function runPortAction(a: PortAction): void {
  const veth = added.get(a.containerId)?.hostVeth;
  if (!veth) throw new TsrunError(`network: no host-side veth recorded for container ${a.containerId.slice(0, 12)} (CNI ADD did not report one)`);
  const bin = BRIDGE_BIN.find((p) => existsSync(p));
  if (!bin) throw new TsrunError('bridge (iproute2) not found in /usr/sbin or /sbin: install package iproute2');
  try {
    execFileSync(bin, ['link', 'set', 'dev', veth, 'isolated', a.isolated ? 'on' : 'off'], { stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (e) {
    const err = ((e as { stderr?: Buffer }).stderr?.toString() ?? '').trim() || (e as Error).message;
    throw new TsrunError(`bridge link set dev ${veth} isolated ${a.isolated ? 'on' : 'off'}: ${err}`, { cause: e });
  }
}
