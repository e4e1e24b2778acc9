// `run --network NAME [--ip IP]` → what the network control needs, checked before anything
// is created: an unknown network, a bad or taken address, a missing plugin are one line
// and exit 125 with nothing left behind.
import { UsageError } from '../errors.js';
import { DEFAULT_CNI_PATH, findCniDir } from './cni.js';
import { checkRequestedIp } from './define.js';
import { allocations, listNetworks, loadNetwork } from './store.js';
import { ipamDirOf, type NetworkAttachment } from './types.js';
import type { PortMapping } from './ports.js';

export function resolveAttachment(data: string, name: string, ip: string | undefined, hostnames: string[], env: NodeJS.ProcessEnv = process.env, ports: PortMapping[] = []): NetworkAttachment {
  const def = loadNetwork(data, name);
  if (!def) {
    const all = listNetworks(data).map((n) => n.name);
    throw new UsageError(`--network ${name}: no such network (${all.length ? `networks: ${all.join(', ')}` : 'there are none: tsrun network create NAME'}; or none, host)`);
  }
  if (ip !== undefined) {
    checkRequestedIp(def, ip);
    const used = allocations(data, name).find((x) => x.ip === ip);
    if (used) throw new UsageError(`--ip ${ip}: already in use on network ${name} by container ${used.containerId.slice(0, 12)}`);
  }
  const cniPath = findCniDir(env.TSRUN_CNI_PATH || DEFAULT_CNI_PATH, ['bridge', 'host-local', ...(ports.length ? ['portmap'] : [])]);
  return { def, ...(ip !== undefined ? { ip } : {}), cniPath, ipamDir: ipamDirOf(data), hostnames: [...new Set(hostnames.filter(Boolean))], ...(ports.length ? { ports } : {}) };
}
