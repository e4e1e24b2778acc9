// What `tsrun stats` shows, read from the container's cgroup files (v1 or v2), plus the
// pure arithmetic docker uses for its columns.
import { totalmem } from 'node:os';
import { join } from 'node:path';
import { readCgroupFile, type CgroupTarget } from './manager.js';

export interface CgroupSample {
  /** pids.current */
  pids?: number;
  /** memory in use minus the inactive page cache, as docker computes it */
  memoryUsage?: number;
  /** the limit, or the host's memory when unlimited */
  memoryLimit?: number;
  /** cumulative CPU time, nanoseconds */
  cpuNs?: number;
  /** CFS throttling counters */
  throttledPeriods?: number;
  /** wall clock of the sample, nanoseconds (process.hrtime) */
  at: bigint;
}

function num(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const t = text.trim();
  if (t === 'max') return Infinity;
  const n = Number(t);
  return Number.isFinite(n) ? n : undefined;
}

/** A `key value` file (memory.stat, cpu.stat) → record. */
export function parseKeyValues(text: string | undefined): Record<string, number> {
  const out: Record<string, number> = {};
  for (const line of (text ?? '').split('\n')) {
    const [k, v] = line.trim().split(/\s+/);
    if (k && v !== undefined && Number.isFinite(Number(v))) out[k] = Number(v);
  }
  return out;
}

/** Reads one sample from the container's cgroup directories. */
export function sampleCgroup(targets: CgroupTarget[], hostMemory = totalmem()): CgroupSample {
  const dir = (c: string): CgroupTarget | undefined => targets.find((t) => t.hierarchy.controllers.includes(c));
  const s: CgroupSample = { at: process.hrtime.bigint() };
  const pids = dir('pids');
  if (pids) s.pids = num(readCgroupFile(join(pids.dir, 'pids.current')));
  const mem = dir('memory');
  if (mem) {
    const v2 = mem.hierarchy.version === 2;
    const usage = num(readCgroupFile(join(mem.dir, v2 ? 'memory.current' : 'memory.usage_in_bytes')));
    const stat = parseKeyValues(readCgroupFile(join(mem.dir, 'memory.stat')));
    // docker subtracts the inactive file cache: it is reclaimed before the limit bites
    const inactive = v2 ? stat['inactive_file'] : (stat['total_inactive_file'] ?? stat['inactive_file']);
    if (usage !== undefined) s.memoryUsage = Math.max(0, usage - (inactive ?? 0));
    const limit = num(readCgroupFile(join(mem.dir, v2 ? 'memory.max' : 'memory.limit_in_bytes')));
    // v1 writes "unlimited" as a page-rounded LONG_MAX
    if (limit !== undefined) s.memoryLimit = limit === Infinity || limit >= hostMemory ? hostMemory : limit;
  }
  const cpu = dir('cpu');
  const acct = dir('cpuacct');
  if (cpu?.hierarchy.version === 2) {
    const st = parseKeyValues(readCgroupFile(join(cpu.dir, 'cpu.stat')));
    if (st['usage_usec'] !== undefined) s.cpuNs = st['usage_usec'] * 1000;
    s.throttledPeriods = st['nr_throttled'];
  } else {
    if (acct) s.cpuNs = num(readCgroupFile(join(acct.dir, 'cpuacct.usage')));
    if (cpu) s.throttledPeriods = parseKeyValues(readCgroupFile(join(cpu.dir, 'cpu.stat')))['nr_throttled'];
  }
  return s;
}

/** CPU use between two samples, in percent of one CPU (docker's CPU %: 200% = two CPUs busy). */
export function cpuPercent(a: CgroupSample, b: CgroupSample): number | undefined {
  if (a.cpuNs === undefined || b.cpuNs === undefined) return undefined;
  const wall = Number(b.at - a.at);
  if (wall <= 0) return undefined;
  return ((b.cpuNs - a.cpuNs) / wall) * 100;
}

/** Bytes the way docker prints them (binary units, two decimals). */
export function formatBytes(n: number | undefined): string {
  if (n === undefined) return '--';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${i === 0 ? v : v.toFixed(2)}${units[i]}`;
}

export interface StatsRow {
  ID: string;
  Name: string;
  CPUPerc: string;
  MemUsage: string;
  MemPerc: string;
  PIDs: string;
  raw: { cpuPercent?: number; memoryUsage?: number; memoryLimit?: number; pids?: number; throttledPeriods?: number };
}

export function statsRow(id: string, name: string, a: CgroupSample, b: CgroupSample): StatsRow {
  const cpu = cpuPercent(a, b);
  const memPerc = b.memoryUsage !== undefined && b.memoryLimit ? (b.memoryUsage / b.memoryLimit) * 100 : undefined;
  return {
    ID: id.slice(0, 12),
    Name: name,
    CPUPerc: cpu === undefined ? '--' : `${cpu.toFixed(2)}%`,
    MemUsage: `${formatBytes(b.memoryUsage)} / ${formatBytes(b.memoryLimit)}`,
    MemPerc: memPerc === undefined ? '--' : `${memPerc.toFixed(2)}%`,
    PIDs: b.pids === undefined ? '--' : String(b.pids),
    raw: {
      ...(cpu !== undefined ? { cpuPercent: cpu } : {}),
      ...(b.memoryUsage !== undefined ? { memoryUsage: b.memoryUsage } : {}),
      ...(b.memoryLimit !== undefined ? { memoryLimit: b.memoryLimit } : {}),
      ...(b.pids !== undefined ? { pids: b.pids } : {}),
      ...(b.throttledPeriods !== undefined ? { throttledPeriods: b.throttledPeriods } : {}),
    },
  };
}

export function formatTable(rows: StatsRow[]): string {
  const head = ['CONTAINER ID', 'NAME', 'CPU %', 'MEM USAGE / LIMIT', 'MEM %', 'PIDS'];
  const cells = rows.map((r) => [r.ID, r.Name, r.CPUPerc, r.MemUsage, r.MemPerc, r.PIDs]);
  const widths = head.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i]!.length)));
  return [head, ...cells].map((c) => c.map((v, i) => (i === c.length - 1 ? v : v.padEnd(widths[i]! + 3))).join('')).join('\n') + '\n';
}
