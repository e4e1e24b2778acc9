// runc's verbs that engines call beyond the lifecycle: `list` and `update`
// (docs/oci-runtime.md). Kept apart from lifecycle.ts, which holds docker's verbs.
import { readFileSync, writeSync } from 'node:fs';
import type { Command } from 'commander';
import { UsageError } from '../errors.js';
import { parseBytes, parseInteger } from '../controls/cgroups/units.js';
import type { Resources } from '../spec/types.js';
import type { Paths } from '../runtime/paths.js';
import { listEntries } from '../runtime/state.js';
import { updateContainer } from '../runtime/update.js';
import { ociState } from './lifecycle.js';
import { eventJson, oomKills, parseDuration, runcStats } from '../controls/cgroups/events.js';
import { readCgroupFile } from '../controls/cgroups/manager.js';
import { findContainers } from './stats.js';
import { join } from 'node:path';

const out = (s: string) => writeSync(1, s);

function num(flag: string, parse: (t: string) => number) {
  return (v: string): number => {
    try {
      return parse(v);
    } catch (e) {
      throw new UsageError(`${flag} ${JSON.stringify(v)}: ${(e as Error).message}`);
    }
  };
}

interface UpdateOptions {
  resources?: string;
  memory?: number;
  memoryReservation?: number;
  memorySwap?: number;
  cpuShare?: number;
  cpuQuota?: number;
  cpuPeriod?: number;
  cpusetCpus?: string;
  cpusetMems?: string;
  pidsLimit?: number;
  blkioWeight?: number;
}

/** runc's rule: --resources gives the whole LinuxResources; the other flags then override fields of it. */
export function updateResources(o: UpdateOptions, readInput: (path: string | 0) => string): Resources {
  let r: Resources = {};
  if (o.resources !== undefined) {
    const where = o.resources === '-' ? 'stdin' : o.resources;
    let text: string;
    try {
      text = readInput(o.resources === '-' ? 0 : o.resources);
    } catch (e) {
      throw new UsageError(`--resources: cannot read ${where} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
    }
    let v: unknown;
    try {
      v = JSON.parse(text);
    } catch (e) {
      throw new UsageError(`--resources: invalid JSON in ${where}: ${(e as Error).message}`);
    }
    if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new UsageError(`--resources: ${where} must hold a JSON object (OCI linux.resources)`);
    r = v as Resources;
  }
  const mem = { ...r.memory };
  if (o.memory !== undefined) mem.limit = o.memory;
  if (o.memoryReservation !== undefined) mem.reservation = o.memoryReservation;
  if (o.memorySwap !== undefined) mem.swap = o.memorySwap;
  if (Object.keys(mem).length) r.memory = mem;
  const cpu = { ...r.cpu };
  if (o.cpuShare !== undefined) cpu.shares = o.cpuShare;
  if (o.cpuQuota !== undefined) cpu.quota = o.cpuQuota;
  if (o.cpuPeriod !== undefined) cpu.period = o.cpuPeriod;
  if (o.cpusetCpus !== undefined) cpu.cpus = o.cpusetCpus;
  if (o.cpusetMems !== undefined) cpu.mems = o.cpusetMems;
  if (Object.keys(cpu).length) r.cpu = cpu;
  if (o.pidsLimit !== undefined) r.pids = { limit: o.pidsLimit };
  if (o.blkioWeight !== undefined) r.blockIO = { ...r.blockIO, weight: o.blkioWeight };
  if (!Object.keys(r).length) throw new UsageError('update: nothing to update (give --resources FILE|- or a limit flag such as --memory, --pids-limit)');
  return r;
}

export function registerOciVerbs(program: Command, paths: () => Paths): void {
  program
    .command('update <id>')
    .description('change the resource limits of a created or running container (runc update)')
    .option('-r, --resources <file>', 'OCI linux.resources JSON from FILE, or - for stdin (containerd\'s shim)')
    .option('--memory <bytes>', 'memory limit (e.g. 96m)', num('--memory', (t) => (t === '-1' ? -1 : parseBytes(t))))
    .option('--memory-reservation <bytes>', 'memory soft limit', num('--memory-reservation', parseBytes))
    .option('--memory-swap <bytes>', 'memory plus swap limit (-1 unlimited)', num('--memory-swap', (t) => (t === '-1' ? -1 : parseBytes(t))))
    .option('--cpu-share <n>', 'CPU shares (relative weight)', num('--cpu-share', parseInteger))
    .option('--cpu-quota <us>', 'CFS quota in microseconds per period', num('--cpu-quota', parseInteger))
    .option('--cpu-period <us>', 'CFS period in microseconds', num('--cpu-period', parseInteger))
    .option('--cpuset-cpus <list>', 'CPUs the container may use (e.g. 0-1)')
    .option('--cpuset-mems <list>', 'memory nodes the container may use')
    .option('--pids-limit <n>', 'maximum number of processes', num('--pids-limit', parseInteger))
    .option('--blkio-weight <n>', 'block IO weight (10-1000)', num('--blkio-weight', parseInteger))
    .action(async (id: string, o: UpdateOptions) => {
      const r = updateResources(o, (p) => readFileSync(p, 'utf8'));
      await updateContainer(paths(), id, r, (m) => writeSync(2, `tsrun: warning: ${m}\n`));
    });

  program
    .command('list')
    .description('containers of this root as runc lists them (ID, PID, STATUS, BUNDLE, CREATED, OWNER)')
    .option('-q, --quiet', 'only the ids')
    .option('-f, --format <fmt>', 'table or json', 'table')
    .action((o: { quiet?: boolean; format: string }) => {
      if (o.format !== 'table' && o.format !== 'json') throw new UsageError(`--format ${JSON.stringify(o.format)}: table or json`);
      const p = paths();
      // a damaged state is left out (it has no trustworthy pid or bundle): `tsrun ps -a` shows it
      const states = listEntries(p)
        .flatMap((e) => (e.ok ? [ociState(e.state, p)] : []))
        .sort((a, b) => a.created.localeCompare(b.created));
      if (o.quiet) return void out(states.map((s) => `${s.id}\n`).join(''));
      if (o.format === 'json') return void out(JSON.stringify(states) + '\n');
      const rows = [['ID', 'PID', 'STATUS', 'BUNDLE', 'CREATED', 'OWNER'], ...states.map((s) => [s.id, String(s.pid), s.status, s.bundle, s.created, s.owner || 'root'])];
      const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
      out(rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]! + 2))).join('')).join('\n') + '\n');
    });

  program
    .command('events <id>')
    .description('the container\'s cgroup stats and OOM events as JSON lines, in runc\'s events format (runc events)')
    .option('--stats', 'print one stats event and exit')
    .option('--interval <duration>', 'time between stats events while streaming (Go duration: 5s, 500ms, 1m)', '5s')
    .action(async (id: string, o: { stats?: boolean; interval: string }) => {
      let interval: number;
      try {
        interval = parseDuration(o.interval);
      } catch (e) {
        throw new UsageError(`--interval: ${(e as Error).message}`);
      }
      if (!(interval > 0)) throw new UsageError(`--interval ${JSON.stringify(o.interval)}: must be greater than 0`);
      const [c] = findContainers(paths().root, [id], 'events');
      const { targets } = c!;
      const emit = (type: string, data?: unknown) => out(eventJson({ type, id: c!.id, ...(data === undefined ? {} : { data }) }) + '\n');
      if (o.stats) return void emit('stats', runcStats(targets));
      // Streams until the container stops (its cgroups hold no process any more, or are gone),
      // as runc's does until the OOM notifier closes with the cgroup. OOM kills are counted by
      // the kernel (oom_kill), so polling every 200 ms misses none: each increase is one event.
      const stopped = () => targets.every((t) => !(readCgroupFile(join(t.dir, 'cgroup.procs')) ?? '').trim());
      let ooms = oomKills(targets) ?? 0n;
      let end = false;
      const onSignal = (): void => {
        end = true;
      };
      process.once('SIGINT', onSignal);
      process.once('SIGTERM', onSignal);
      try {
        let next = Date.now() + interval;
        while (!end) {
          await new Promise((r) => setTimeout(r, Math.max(0, Math.min(200, next - Date.now()))));
          const n = oomKills(targets);
          for (; n !== undefined && ooms < n; ooms++) emit('oom');
          if (stopped()) break;
          if (Date.now() >= next) {
            emit('stats', runcStats(targets));
            next += interval;
          }
        }
      } finally {
        process.off('SIGINT', onSignal);
        process.off('SIGTERM', onSignal);
      }
    });
}
