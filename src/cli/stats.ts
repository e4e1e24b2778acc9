// `tsrun stats [ID...]`: pids, memory use/limit and CPU % of running containers, read from
// their cgroups (as `docker stats`). Only the containers of this state root (--root) are
// listed: their state files name their cgroup directories (the plan's cleanup steps), and a
// container counts only while its init, checked by pid and start time, is in that cgroup.
// Another root's containers, or a cgroup with no state, are not this root's to show.
import { readFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import type { Command } from 'commander';
import { StateError } from '../errors.js';
import { formatRows, humanSize, row } from './format.js';
import { readCgroupFile, targetsFromSteps, type CgroupTarget } from '../controls/cgroups/manager.js';
import { hostLayout } from '../controls/cgroups/mode.js';
import { formatTable, sampleCgroup, statsRow, type StatsRow } from '../controls/cgroups/stats.js';
import { defaultPaths } from '../runtime/paths.js';
import { isAlive, listStates } from '../runtime/state.js';

export interface Found {
  id: string;
  name: string;
  targets: CgroupTarget[];
  /** docker's {{.Container}}: the name or id as given, else the short id */
  given?: string;
  /** the init, checked alive and in the cgroup: its /proc/PID/net/dev is the container's netns */
  state: Parameters<typeof isAlive>[0];
}

/** State is evidence: the init named by the state must be alive and inside the recorded cgroup. */
function inCgroup(pid: number, targets: CgroupTarget[]): boolean {
  return targets.some((t) => (readCgroupFile(join(t.dir, 'cgroup.procs')) ?? '').split('\n').includes(String(pid)));
}

export function findContainers(root: string, ids: string[], verb = 'stats'): Found[] {
  const layout = hostLayout();
  const live: Found[] = [];
  for (const s of listStates({ root, data: '' })) {
    if (typeof s.id !== 'string' || !Array.isArray(s.cleanup) || !Number.isInteger(s.pid) || s.pid <= 0) continue;
    const targets = targetsFromSteps(layout, s.cleanup);
    if (targets.length && isAlive(s) && inCgroup(s.pid, targets)) live.push({ id: s.id, name: typeof s.name === 'string' ? s.name : '', targets, state: s });
  }
  if (ids.length === 0) return live;
  return ids.map((want) => {
    const hits = live.filter((f) => f.id === want || f.name === want || f.id.startsWith(want));
    if (hits.length === 0) throw new StateError(`${verb}: no running container ${JSON.stringify(want)}`);
    if (hits.length > 1) throw new StateError(`${verb}: ${JSON.stringify(want)} matches ${hits.length} containers; give more of the id`);
    return { ...hits[0]!, given: want };
  });
}

type Sampled = StatsRow & { given: string; fullId: string; netIO: string; blockIO: string };

/** Bytes read and written by the cgroup's processes (v1 blkio service bytes, v2 io.stat), as docker's BLOCK I/O. */
export function blockIO(targets: CgroupTarget[]): [number, number] | undefined {
  const t = targets.find((x) => x.hierarchy.controllers.includes(x.hierarchy.version === 2 ? 'io' : 'blkio'));
  if (!t) return undefined;
  let read = 0;
  let write = 0;
  if (t.hierarchy.version === 2) {
    const text = readCgroupFile(join(t.dir, 'io.stat'));
    if (text === undefined) return undefined;
    for (const m of text.matchAll(/\b(rbytes|wbytes)=(\d+)/g)) m[1] === 'rbytes' ? (read += Number(m[2])) : (write += Number(m[2]));
    return [read, write];
  }
  const text = readCgroupFile(join(t.dir, 'blkio.throttle.io_service_bytes_recursive'));
  if (text === undefined) return undefined;
  for (const line of text.split('\n')) {
    const [dev, op, n] = line.trim().split(/\s+/);
    if (!dev?.includes(':')) continue;
    if (op === 'Read') read += Number(n) || 0;
    if (op === 'Write') write += Number(n) || 0;
  }
  return [read, write];
}

/**
 * Bytes received and sent on the container's interfaces but loopback (docker counts its
 * endpoints), from the kernel's per-netns /proc/PID/net/dev of the checked init. A pid that
 * is no longer that init (isAlive compares its start time) gives nothing.
 */
export function netIO(f: { state: Parameters<typeof isAlive>[0] }): [number, number] | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${f.state.pid}/net/dev`, 'utf8');
  } catch {
    return undefined;
  }
  if (!isAlive(f.state)) return undefined;
  let rx = 0;
  let tx = 0;
  for (const line of text.split('\n').slice(2)) {
    const m = /^\s*([^:\s]+):\s*(.*)$/.exec(line);
    if (!m || m[1] === 'lo') continue;
    const cols = m[2]!.trim().split(/\s+/).map(Number);
    rx += cols[0] || 0;
    tx += cols[8] || 0;
  }
  return [rx, tx];
}

const pair = (v: [number, number] | undefined) => (v ? `${humanSize(v[0])} / ${humanSize(v[1])}` : '--');

async function collect(found: Found[], intervalMs: number): Promise<Sampled[]> {
  const first = found.map((f) => sampleCgroup(f.targets));
  await new Promise((r) => setTimeout(r, intervalMs));
  return found.map((f, i) => ({ ...statsRow(f.id, f.name, first[i]!, sampleCgroup(f.targets)), given: f.given ?? f.id.slice(0, 12), fullId: f.id, netIO: pair(netIO(f)), blockIO: pair(blockIO(f.targets)) }));
}

const STATS_HEADERS = { Container: 'CONTAINER', Name: 'NAME', ID: 'CONTAINER ID', CPUPerc: 'CPU %', MemUsage: 'MEM USAGE / LIMIT', MemPerc: 'MEM %', NetIO: 'NET I/O', BlockIO: 'BLOCK I/O', PIDs: 'PIDS' };

/** docker stats' fields ("--" where the kernel gave nothing to read). */
function statsFields(r: Sampled) {
  return row({ Container: r.given, Name: r.Name, ID: r.fullId.slice(0, 12), CPUPerc: r.CPUPerc, MemUsage: r.MemUsage, MemPerc: r.MemPerc, NetIO: r.netIO, BlockIO: r.blockIO, PIDs: r.PIDs });
}

function print(rows: Sampled[], format: string | undefined): string {
  if (format === 'json') return rows.map(({ given: _g, fullId: _f, netIO: _n, blockIO: _b, ...r }) => JSON.stringify(r)).join('\n') + (rows.length ? '\n' : '');
  if (format !== undefined && format !== 'table') {
    const custom = formatRows(format, rows.map(statsFields), STATS_HEADERS);
    if (custom !== undefined) return custom;
  }
  return formatTable(rows);
}

export function registerStatsCommand(program: Command): Command {
  return program
    .command('stats')
    .description('live resource use of running containers, from their cgroups (as docker stats)')
    .argument('[ids...]', 'container ids, id prefixes or names (default: all running)')
    .option('--no-stream', 'print one sample and exit')
    .option('--format <format>', 'table (default), json (one object per line), or a Go template: \'{{.Name}} {{.CPUPerc}}\', \'table {{.Container}}\\t{{.MemUsage}}\' (docs/cli-format.md)')
    .action(async (ids: string[], opts: { stream: boolean; format?: string }) => {
      const root = program.opts<{ root?: string }>().root ?? defaultPaths().root;
      const format = opts.format === 'table' ? undefined : opts.format;
      // a template error is the user's before any sampling: parse it once up front
      if (format !== undefined && format !== 'json') formatRows(format, [], STATS_HEADERS);
      if (!opts.stream) {
        writeSync(1, print(await collect(findContainers(root, ids), 500), format));
        return;
      }
      let stop = false;
      const onInt = (): void => {
        stop = true;
      };
      process.once('SIGINT', onInt);
      try {
        while (!stop) {
          const rows = await collect(findContainers(root, ids), 1000);
          // the table redraws in place on a terminal, as docker stats does
          writeSync(1, (format || !process.stdout.isTTY ? '' : '\x1b[2J\x1b[H') + print(rows, format));
          if (ids.length && rows.length === 0) break;
        }
      } finally {
        process.off('SIGINT', onInt);
      }
    });
}
