// `tsrun network create|ls|inspect|rm`: user-defined bridge networks (docs/networks.md).
import { randomBytes } from 'node:crypto';
import { writeSync } from 'node:fs';
import type { Command } from 'commander';
import { UsageError } from '../errors.js';
import { loadConfig } from '../config/index.js';
import type { Paths } from '../runtime/paths.js';
import { listEntries, listStates, statusOf, withLock } from '../runtime/state.js';
import { defineNetwork, type CreateFlags } from '../network/define.js';
import { allocations, deleteBridge, ensureBridge, hostRoutes, listNetworks, loadNetwork, removeIdlePortmapChains, removeNetworkFiles, saveNetwork } from '../network/store.js';
import { NETWORK_ANNOTATION, type NetworkDef } from '../network/types.js';
import { formatMapping, publishedPorts } from '../network/ports.js';
import { resolve } from '../runtime/lifecycle.js';

const out = (s: string) => writeSync(1, s);

function table(rows: string[][]): string {
  const w = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(w[i]! + 3))).join('').trimEnd()).join('\n') + '\n';
}

function requireRoot(verb: string): void {
  if (process.getuid?.() !== 0) throw new UsageError(`tsrun network ${verb} needs root: it creates and deletes bridge devices (try: sudo tsrun network ${verb} ...)`);
}

function collect(v: string, prev: string[] = []): string[] {
  return [...prev, v];
}

function mustLoad(paths: Paths, name: string): NetworkDef {
  const def = loadNetwork(paths.data, name);
  if (def) return def;
  const all = listNetworks(paths.data).map((n) => n.name);
  throw new UsageError(`network ${name}: no such network (${all.length ? `networks: ${all.join(', ')}` : 'there are none'})`);
}

/** The containers with an address on the network: host-local's files, names from the state dir. */
function attached(paths: Paths, def: NetworkDef) {
  const states = new Map(listStates(paths).map((s) => [s.id, s]));
  return allocations(paths.data, def.name).map((a) => {
    const s = states.get(a.containerId);
    return { id: a.containerId, ...(s?.name ? { name: s.name } : {}), ip: a.ip, ipv4Address: `${a.ip}/${def.subnet.split('/')[1]}`, exists: s !== undefined };
  });
}

export function registerNetworkCommands(program: Command, paths: () => Paths, setExit: (code: number) => void): void {
  program
    .command('port')
    .description('the published ports of a container (docker port): CONTAINER_PORT/PROTO -> HOST_IP:HOST_PORT')
    .argument('<container>', 'name or id')
    .argument('[port]', 'only this container port, e.g. 80 or 80/tcp')
    .action((ref: string, port: string | undefined) => {
      const ms = publishedPorts(resolve(paths(), ref).config).filter((m) => !port || `${m.containerPort}/${m.protocol}` === (port.includes('/') ? port : `${port}/tcp`));
      if (port && ms.length === 0) throw new UsageError(`no public port ${JSON.stringify(port)} published for ${ref}`);
      for (const m of ms) out(port ? `${m.hostIP || '0.0.0.0'}:${m.hostPort}\n` : `${formatMapping(m)}\n`);
    });

  const net = program.command('network').description('manage bridge networks (docker network): create, ls, inspect, rm');

  net
    .command('create')
    .description('create a bridge network: a Linux bridge on the host, addresses from the CNI host-local plugin')
    .argument('<name>', 'network name')
    .option('--subnet <cidr>', 'IPv4 subnet (default: the first free /24 in 10.77.0.0/16)')
    .option('--gateway <ip>', 'the bridge\'s address (default: the first address of the subnet)')
    .option('--internal', 'no route and no NAT to the outside: containers reach the subnet and the gateway only (docker\'s --internal)')
    .option('--icc <bool>', 'inter-container communication (default true, or "icc" in the config file); false isolates containers from each other')
    .option('-o, --opt <key=value>', `driver option: com.docker.network.bridge.enable_icc=true|false (repeatable)`, collect)
    .option('-d, --driver <driver>', 'bridge (the only one)')
    .option('--config <file>', 'host-wide config (daemon.json keys; "icc" is the default for new networks)')
    .action(async (name: string, o: CreateFlags & { config?: string }) => {
      requireRoot('create');
      const cfg = loadConfig(o.config, process.env);
      const p = paths();
      const def = await withLock(p, 'networks', () => {
        const d = defineNetwork(name, o, { networks: listNetworks(p.data), hostRoutes: hostRoutes() }, { id: randomBytes(32).toString('hex'), now: new Date().toISOString(), defaultIcc: cfg.config.icc ?? true });
        // the device first: a network that exists on disk always has its bridge
        try {
          ensureBridge(d);
          saveNetwork(p.data, d);
        } catch (e) {
          try {
            deleteBridge(d);
          } catch {
            /* the first error is the one to report */
          }
          throw e;
        }
        return d;
      });
      out(`${def.id}\n`);
      setExit(0);
    });

  net
    .command('ls')
    .alias('list')
    .description('list networks')
    .option('-q, --quiet', 'only names')
    .option('--format <fmt>', 'table or json', 'table')
    .action((o: { quiet?: boolean; format: string }) => {
      if (o.format !== 'table' && o.format !== 'json') throw new UsageError(`--format ${JSON.stringify(o.format)}: table or json`);
      const all = listNetworks(paths().data);
      if (o.quiet) return void out(all.map((n) => `${n.name}\n`).join(''));
      if (o.format === 'json') return void out(JSON.stringify(all, null, 2) + '\n');
      out(table([['NETWORK ID', 'NAME', 'DRIVER', 'SUBNET', 'GATEWAY', 'ICC', 'BRIDGE'], ...all.map((n) => [n.id.slice(0, 12), n.name, n.driver, n.subnet, n.gateway, String(n.icc), n.bridge])]));
    });

  net
    .command('inspect')
    .description('a network as JSON, with the containers that have an address on it')
    .argument('<names...>', 'network names')
    .action((names: string[]) => {
      const p = paths();
      const defs = names.map((n) => mustLoad(p, n));
      out(JSON.stringify(defs.map((d) => ({ ...d, containers: attached(p, d).filter((c) => c.exists).map(({ exists: _, ...c }) => c) })), null, 2) + '\n');
    });

  net
    .command('rm')
    .alias('remove')
    .description('remove networks and their bridges (refused while a container has an address on one)')
    .argument('<names...>', 'network names')
    .action(async (names: string[]) => {
      requireRoot('rm');
      const p = paths();
      await withLock(p, 'networks', () => {
        const defs = names.map((n) => mustLoad(p, n));
        for (const d of defs) {
          // a container starting right now has its state (with the annotation) before its address
          // (`creating` until its pid is saved); a damaged one counts as long as its record names the network
          const live = listEntries(p).flatMap((e) => {
            const s = e.ok ? e.state : e.record;
            if (!s || s.annotations[NETWORK_ANNOTATION] !== d.name || (e.ok && statusOf(e.state, p) === 'stopped')) return [];
            return [s.name ?? s.id.slice(0, 12)];
          });
          const users = [...new Set([...attached(p, d).filter((c) => c.exists).map((c) => c.name ?? c.id.slice(0, 12)), ...live])];
          if (users.length) throw new UsageError(`network ${d.name} is in use by container ${users.join(', ')}: stop or remove it first (tsrun rm -f)`);
        }
        for (const d of defs) {
          deleteBridge(d);
          // addresses of containers that no longer exist (a tsrun killed before its clean-up)
          removeNetworkFiles(p.data, d);
          out(`${d.name}\n`);
        }
        removeIdlePortmapChains();
      });
      setExit(0);
    });
}
