// `tsrun stats [ID...]`: pids, memory use/limit and CPU % of running containers, read from
// their cgroups (as `docker stats`). Only the containers of this state root (--root) are
// listed: their state files name their cgroup directories (the plan's cleanup steps), and a
// container counts only while its init, checked by pid and start time, is in that cgroup.
// Another root's containers, or a cgroup with no state, are not this root's to show.
import { writeSync } from 'node:fs';
import { join } from 'node:path';
import type { Command } from 'commander';
import { StateError, UsageError } from '../errors.js';
import { readCgroupFile, targetsFromSteps, type CgroupTarget } from '../controls/cgroups/manager.js';
import { hostLayout } from '../controls/cgroups/mode.js';
import { formatTable, sampleCgroup, statsRow, type StatsRow } from '../controls/cgroups/stats.js';
import { defaultPaths } from '../runtime/paths.js';
import { isAlive, listStates } from '../runtime/state.js';

export interface Found {
  id: string;
  name: string;
  targets: CgroupTarget[];
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
    if (targets.length && isAlive(s) && inCgroup(s.pid, targets)) live.push({ id: s.id, name: typeof s.name === 'string' ? s.name : '', targets });
  }
  if (ids.length === 0) return live;
  return ids.map((want) => {
    const hits = live.filter((f) => f.id === want || f.name === want || f.id.startsWith(want));
    if (hits.length === 0) throw new StateError(`${verb}: no running container ${JSON.stringify(want)}`);
    if (hits.length > 1) throw new StateError(`${verb}: ${JSON.stringify(want)} matches ${hits.length} containers; give more of the id`);
    return hits[0]!;
  });
}

async function collect(found: Found[], intervalMs: number): Promise<StatsRow[]> {
  const first = found.map((f) => sampleCgroup(f.targets));
  await new Promise((r) => setTimeout(r, intervalMs));
  return found.map((f, i) => statsRow(f.id, f.name, first[i]!, sampleCgroup(f.targets)));
}

function print(rows: StatsRow[], format: string | undefined): string {
  if (format === 'json') return rows.map((r) => JSON.stringify(r)).join('\n') + (rows.length ? '\n' : '');
  return formatTable(rows);
}

export function registerStatsCommand(program: Command): Command {
  return program
    .command('stats')
    .description('live resource use of running containers, from their cgroups (as docker stats)')
    .argument('[ids...]', 'container ids, id prefixes or names (default: all running)')
    .option('--no-stream', 'print one sample and exit')
    .option('--format <format>', 'table (default) or json (one object per line)')
    .action(async (ids: string[], opts: { stream: boolean; format?: string }) => {
      if (opts.format !== undefined && opts.format !== 'json' && opts.format !== 'table') {
        throw new UsageError(`--format: ${JSON.stringify(opts.format)} is not table or json`);
      }
      const root = program.opts<{ root?: string }>().root ?? defaultPaths().root;
      const format = opts.format === 'json' ? 'json' : undefined;
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
