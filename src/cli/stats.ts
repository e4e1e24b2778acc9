// `tsrun stats [ID...]`: pids, memory use/limit and CPU % of running containers, read from
// their cgroups (as `docker stats`). Containers are found through their state files under
// --root (the cgroup directories recorded in their cleanup steps) and under tsrun's own
// parent cgroup.
import { existsSync, readdirSync, readFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import type { Command } from 'commander';
import { StateError, UsageError } from '../errors.js';
import { DEFAULT_PARENT, readCgroupFile, targetsFromSteps, type CgroupTarget } from '../controls/cgroups/manager.js';
import { hostLayout, type CgroupLayout } from '../controls/cgroups/mode.js';
import { containersUnder, formatTable, sampleCgroup, statsRow, targetsFor, type StatsRow } from '../controls/cgroups/stats.js';
import { defaultPaths } from '../runtime/paths.js';

interface Found {
  id: string;
  name: string;
  targets: CgroupTarget[];
}

/** A state file (src/runtime/state.ts) keeps the plan's cleanup steps: they name the cgroup dirs. */
function fromState(layout: CgroupLayout, root: string, id: string): Found | undefined {
  const file = join(root, id, 'state.json');
  if (!existsSync(file)) return undefined;
  try {
    const st = JSON.parse(readFileSync(file, 'utf8')) as { id?: string; name?: string; cleanup?: { action: string; verb?: string; path?: string; value?: string }[] };
    const targets = targetsFromSteps(layout, st.cleanup ?? []);
    return targets.length ? { id: st.id ?? id, name: st.name ?? '', targets } : undefined;
  } catch {
    return undefined;
  }
}

/** Running = some process is in the container's cgroup (a stopped container keeps its cgroup until rm). */
function running(f: Found): boolean {
  return f.targets.some((t) => (readCgroupFile(join(t.dir, 'cgroup.procs')) ?? '').trim() !== '');
}

export function findContainers(root: string, ids: string[]): Found[] {
  const layout = hostLayout();
  const known = new Map<string, Found>();
  if (existsSync(root)) {
    for (const d of readdirSync(root)) {
      const f = fromState(layout, root, d);
      if (f) known.set(f.id, f);
    }
  }
  // containers of other tsrun roots (or without state) under tsrun's own parent cgroup
  for (const id of containersUnder(layout, DEFAULT_PARENT)) {
    if (!known.has(id)) known.set(id, { id, name: '', targets: targetsFor(layout, `${DEFAULT_PARENT}/${id}`) });
  }
  const live = [...known.values()].filter(running);
  if (ids.length === 0) return live;
  return ids.map((want) => {
    const hits = live.filter((f) => f.id === want || f.name === want || f.id.startsWith(want));
    if (hits.length === 0) throw new StateError(`stats: no running container ${JSON.stringify(want)}`);
    if (hits.length > 1) throw new StateError(`stats: ${JSON.stringify(want)} matches ${hits.length} containers; give more of the id`);
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
