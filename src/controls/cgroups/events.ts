// `tsrun events` (runc's verb): the container's cgroup counters in runc's events format
// (runc types/events.go: {"type":"stats","id":…,"data":{cpu,memory,pids,blkio,hugetlb}}), read
// from whichever hierarchy holds each controller (v1, v2 or hybrid). Counters stay bigint: v1
// writes "unlimited" as a page-rounded LONG_MAX and v2 "max" as runc's MaxUint64, both beyond
// a double's 53 bits, and an engine decoding uint64 must read the kernel's number exactly.
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { readCgroupFile, type CgroupTarget } from './manager.js';

const MAX_U64 = 18446744073709551615n;
/** sysconf(_SC_CLK_TCK) on Linux (USER_HZ): cpuacct.stat counts in these ticks. */
const USER_HZ = 100n;

type Big = bigint | undefined;

function big(text: string | undefined): Big {
  if (text === undefined) return undefined;
  const t = text.trim();
  if (t === 'max') return MAX_U64;
  return /^\d+$/.test(t) ? BigInt(t) : undefined;
}

/** A `key value` file (memory.stat, cpu.stat, memory.events) → record of bigint. */
function keyValues(text: string | undefined): Record<string, bigint> {
  const out: Record<string, bigint> = {};
  for (const line of (text ?? '').split('\n')) {
    const [k, v] = line.trim().split(/\s+/);
    if (k && v !== undefined && /^\d+$/.test(v)) out[k] = BigInt(v);
  }
  return out;
}

const list = (text: string | undefined): bigint[] => (text ?? '').trim().split(/\s+/).filter((x) => /^\d+$/.test(x)).map(BigInt);

/** Go's `omitempty`: zero, empty and absent fields are left out. */
function omit<T extends Record<string, unknown>>(o: T): Partial<T> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(o)) {
    if (v === undefined || v === 0n || (Array.isArray(v) && !v.length)) continue;
    if (typeof v === 'object' && v !== null && !Array.isArray(v) && !Object.keys(v).length) continue;
    out[k] = v;
  }
  return out as Partial<T>;
}

interface BlkioEntry {
  major?: bigint;
  minor?: bigint;
  op?: string;
  value?: bigint;
}

/** v1 blkio files: "MAJ:MIN Op value" lines (a trailing "Total N" has no device and is left out, as runc does). */
function blkioV1(text: string | undefined): BlkioEntry[] {
  const out: BlkioEntry[] = [];
  for (const line of (text ?? '').split('\n')) {
    const m = /^(\d+):(\d+)\s+(\S+)\s+(\d+)$/.exec(line.trim());
    if (m) out.push(omit({ major: BigInt(m[1]!), minor: BigInt(m[2]!), op: m[3]!, value: BigInt(m[4]!) }));
  }
  return out;
}

/** v2 io.stat: "MAJ:MIN rbytes=… wbytes=… rios=… wios=…", mapped to v1's Read/Write entries as runc does. */
function blkioV2(text: string | undefined): { bytes: BlkioEntry[]; ios: BlkioEntry[] } {
  const bytes: BlkioEntry[] = [];
  const ios: BlkioEntry[] = [];
  for (const line of (text ?? '').split('\n')) {
    const [dev, ...kv] = line.trim().split(/\s+/);
    const d = /^(\d+):(\d+)$/.exec(dev ?? '');
    if (!d) continue;
    const f = Object.fromEntries(kv.map((x) => x.split('=') as [string, string]).filter(([, v]) => /^\d+$/.test(v ?? '')));
    const entry = (op: string, v: string | undefined) => omit({ major: BigInt(d[1]!), minor: BigInt(d[2]!), op, value: v === undefined ? undefined : BigInt(v) });
    if (f.rbytes !== undefined) bytes.push(entry('Read', f.rbytes));
    if (f.wbytes !== undefined) bytes.push(entry('Write', f.wbytes));
    if (f.rios !== undefined) ios.push(entry('Read', f.rios));
    if (f.wios !== undefined) ios.push(entry('Write', f.wios));
  }
  return { bytes, ios };
}

function files(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

/** runc's types.Stats for the container's cgroup directories (fields a hierarchy lacks stay out). */
export function runcStats(targets: CgroupTarget[]): Record<string, unknown> {
  const at = (c: string): CgroupTarget | undefined => targets.find((t) => t.hierarchy.controllers.includes(c));
  const rd = (t: CgroupTarget, f: string) => readCgroupFile(join(t.dir, f));

  // cpu
  const cpu = at('cpu');
  const acct = at('cpuacct');
  let usage: Record<string, unknown> = {};
  let throttling: Record<string, unknown> = {};
  if (cpu?.hierarchy.version === 2) {
    const s = keyValues(rd(cpu, 'cpu.stat'));
    const ns = (v: Big) => (v === undefined ? undefined : v * 1000n);
    usage = { ...omit({ total: ns(s['usage_usec']) }), kernel: ns(s['system_usec']) ?? 0n, user: ns(s['user_usec']) ?? 0n };
    throttling = omit({ periods: s['nr_periods'], throttledPeriods: s['nr_throttled'], throttledTime: ns(s['throttled_usec']) });
  } else {
    if (acct) {
      const st = keyValues(rd(acct, 'cpuacct.stat'));
      // cpuacct.usage_all: "cpu user system" per CPU, in nanoseconds
      const all = (rd(acct, 'cpuacct.usage_all') ?? '').split('\n').slice(1).map((l) => l.trim().split(/\s+/)).filter((c) => c.length === 3 && c.every((x) => /^\d+$/.test(x)));
      usage = {
        ...omit({
          total: big(rd(acct, 'cpuacct.usage')),
          percpu: list(rd(acct, 'cpuacct.usage_percpu')),
          percpu_kernel: all.map((c) => BigInt(c[2]!)),
          percpu_user: all.map((c) => BigInt(c[1]!)),
        }),
        kernel: ((st['system'] ?? 0n) * 1_000_000_000n) / USER_HZ,
        user: ((st['user'] ?? 0n) * 1_000_000_000n) / USER_HZ,
      };
    }
    if (cpu) {
      const s = keyValues(rd(cpu, 'cpu.stat'));
      throttling = omit({ periods: s['nr_periods'], throttledPeriods: s['nr_throttled'], throttledTime: s['throttled_time'] });
    }
  }

  // memory
  const memT = at('memory');
  let memory: Record<string, unknown> = {};
  if (memT) {
    const raw = keyValues(rd(memT, 'memory.stat'));
    const entry = (limit: Big, use: Big, max: Big, failcnt: Big) => (use === undefined && limit === undefined ? undefined : { limit: limit ?? 0n, ...omit({ usage: use, max }), failcnt: failcnt ?? 0n });
    if (memT.hierarchy.version === 2) {
      const cur = big(rd(memT, 'memory.current'));
      const swap = big(rd(memT, 'memory.swap.current'));
      const swapMax = big(rd(memT, 'memory.swap.max'));
      const ev = keyValues(rd(memT, 'memory.events'));
      memory = omit({
        cache: raw['file'],
        usage: entry(big(rd(memT, 'memory.max')), cur, big(rd(memT, 'memory.peak')), ev['max']),
        // v1's memsw counted memory plus swap; runc keeps that meaning on v2
        swap: swap === undefined ? undefined : entry(swapMax === MAX_U64 ? MAX_U64 : swapMax === undefined ? undefined : swapMax + (big(rd(memT, 'memory.max')) ?? 0n), swap + (cur ?? 0n), undefined, undefined),
        raw,
      });
    } else {
      const e = (p: string) => entry(big(rd(memT, `${p}.limit_in_bytes`)), big(rd(memT, `${p}.usage_in_bytes`)), big(rd(memT, `${p}.max_usage_in_bytes`)), big(rd(memT, `${p}.failcnt`)));
      memory = omit({ cache: raw['cache'], usage: e('memory'), swap: e('memory.memsw'), kernel: e('memory.kmem'), kernelTCP: e('memory.kmem.tcp'), raw });
    }
  }

  // pids: "max" is no limit, 0 in runc's output
  const pidsT = at('pids');
  const pids = pidsT ? omit({ current: big(rd(pidsT, 'pids.current')), limit: ((l) => (l === MAX_U64 ? undefined : l))(big(rd(pidsT, 'pids.max'))) }) : {};

  // blkio
  const io = at('io');
  const blk = at('blkio');
  let blkio: Record<string, unknown> = {};
  if (io?.hierarchy.version === 2) {
    const { bytes, ios } = blkioV2(rd(io, 'io.stat'));
    blkio = omit({ ioServiceBytesRecursive: bytes, ioServicedRecursive: ios });
  } else if (blk) {
    // CFQ/BFQ's recursive files when the scheduler has them, else the throttle layer's (runc's order)
    const pick = (name: string) => {
      const r = blkioV1(rd(blk, `blkio.${name}_recursive`));
      return r.length ? r : blkioV1(rd(blk, `blkio.throttle.${name}`));
    };
    blkio = omit({
      ioServiceBytesRecursive: pick('io_service_bytes'),
      ioServicedRecursive: pick('io_serviced'),
      ioQueueRecursive: blkioV1(rd(blk, 'blkio.io_queued_recursive')),
      ioServiceTimeRecursive: blkioV1(rd(blk, 'blkio.io_service_time_recursive')),
      ioWaitTimeRecursive: blkioV1(rd(blk, 'blkio.io_wait_time_recursive')),
      ioMergedRecursive: blkioV1(rd(blk, 'blkio.io_merged_recursive')),
      ioTimeRecursive: blkioV1(rd(blk, 'blkio.time_recursive')),
      sectorsRecursive: blkioV1(rd(blk, 'blkio.sectors_recursive')),
    });
  }

  // hugetlb: one entry per page size the kernel lists (hugetlb.2MB.*)
  const huge = at('hugetlb');
  const hugetlb: Record<string, unknown> = {};
  if (huge) {
    const v2 = huge.hierarchy.version === 2;
    const sizes = new Set(files(huge.dir).flatMap((f) => /^hugetlb\.([0-9]+[KMG]B)\.(current|usage_in_bytes)$/.exec(f)?.[1] ?? []));
    for (const size of sizes) {
      const p = `hugetlb.${size}`;
      const usage = big(rd(huge, v2 ? `${p}.current` : `${p}.usage_in_bytes`));
      const max = v2 ? undefined : big(rd(huge, `${p}.max_usage_in_bytes`));
      const failcnt = v2 ? keyValues(rd(huge, `${p}.events`))['max'] : big(rd(huge, `${p}.failcnt`));
      hugetlb[size] = { ...omit({ usage, max }), failcnt: failcnt ?? 0n };
    }
  }

  const cpuOut = omit({ usage: Object.keys(usage).length ? usage : undefined, throttling });
  return { cpu: cpuOut, memory, pids, blkio, hugetlb };
}

/** The OOM kills the memory controller counted so far (v2 memory.events, v1 memory.oom_control's oom_kill, Linux 4.13). */
export function oomKills(targets: CgroupTarget[]): bigint | undefined {
  const t = targets.find((x) => x.hierarchy.controllers.includes('memory'));
  if (!t) return undefined;
  const kv = keyValues(readCgroupFile(join(t.dir, t.hierarchy.version === 2 ? 'memory.events' : 'memory.oom_control')));
  return kv['oom_kill'];
}

/** JSON with bigint counters written as exact integers. */
export function eventJson(e: { type: string; id: string; data?: unknown }): string {
  const marks: string[] = [];
  const text = JSON.stringify(e, (_k, v: unknown) => {
    if (typeof v !== 'bigint') return v;
    marks.push(v.toString());
    return `\u0000big${marks.length - 1}\u0000`;
  });
  return text.replace(/"\\u0000big(\d+)\\u0000"/g, (_m, i: string) => marks[Number(i)]!);
}

/** Go's time.ParseDuration for the units runc's --interval takes ("5s", "100ms", "1m30s"). */
export function parseDuration(text: string): number {
  const unit: Record<string, number> = { ns: 1e-6, us: 1e-3, µs: 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
  const re = /(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)/y;
  let ms = 0;
  let i = 0;
  if (!text) throw new Error('empty duration');
  while (i < text.length) {
    re.lastIndex = i;
    const m = re.exec(text);
    if (!m) throw new Error(`invalid duration ${JSON.stringify(text)} (e.g. 5s, 500ms, 1m30s)`);
    ms += Number(m[1]) * unit[m[2]!]!;
    i = re.lastIndex;
  }
  return ms;
}
