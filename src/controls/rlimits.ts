// Resource limits (setrlimit(2), getrlimit(2); CIS 5.28 and the workshop's default-ulimits).
// Limits are per process and inherited across fork and execve, so init sets them before
// it execs the container's command. Two facts the kernel enforces that users trip over:
//  - Raising a hard limit needs CAP_SYS_RESOURCE in the *initial* user namespace: a user
//    namespace does not help, and root on these machines lacks it (EPERM).
//  - RLIMIT_NPROC counts the processes of the caller's real uid (per user namespace
//    since 5.14), checked at fork/clone; host uid 0 is exempt, so it only protects when
//    the container runs as a non-root user or with a remapped root (--userns-remap).
import { readFileSync } from 'node:fs';
import type { BuildContext, ChildStep, Control, Step } from '../plan/types.js';
import type { FlagDef } from '../spec/flag-types.js';
import type { Rlimit, Spec } from '../spec/types.js';
import { SpecError, UsageError } from '../errors.js';

export interface RlimitInfo {
  /** docker's --ulimit name */
  name: string;
  /** resource number for x86_64/arm64 (asm-generic/resource.h) */
  resource: number;
  /** the line /proc/<pid>/limits prints */
  procName: string;
  meaning: string;
}

/** Every name docker's --ulimit accepts (all of asm-generic/resource.h except "as"), plus as. */
export const RLIMITS: readonly RlimitInfo[] = [
  { name: 'cpu', resource: 0, procName: 'Max cpu time', meaning: 'CPU seconds; SIGXCPU at soft, SIGKILL at hard' },
  { name: 'fsize', resource: 1, procName: 'Max file size', meaning: 'largest file it may write (bytes); SIGXFSZ beyond' },
  { name: 'data', resource: 2, procName: 'Max data size', meaning: 'data segment + heap + private mappings (bytes)' },
  { name: 'stack', resource: 3, procName: 'Max stack size', meaning: 'main thread stack (bytes)' },
  { name: 'core', resource: 4, procName: 'Max core file size', meaning: 'core dump size (bytes); 0 disables dumps that may hold secrets' },
  { name: 'rss', resource: 5, procName: 'Max resident set', meaning: 'ignored by Linux since 2.6 (use the memory cgroup)' },
  { name: 'nproc', resource: 6, procName: 'Max processes', meaning: 'processes of the real uid: fork bombs get EAGAIN (uid 0 exempt)' },
  { name: 'nofile', resource: 7, procName: 'Max open files', meaning: 'highest fd number + 1; EMFILE beyond' },
  { name: 'memlock', resource: 8, procName: 'Max locked memory', meaning: 'mlock(2)ed bytes' },
  { name: 'as', resource: 9, procName: 'Max address space', meaning: 'virtual address space (bytes); not accepted by docker' },
  { name: 'locks', resource: 10, procName: 'Max file locks', meaning: 'ignored by Linux since 2.4.25' },
  { name: 'sigpending', resource: 11, procName: 'Max pending signals', meaning: 'queued signals of the real uid' },
  { name: 'msgqueue', resource: 12, procName: 'Max msgqueue size', meaning: 'bytes in POSIX message queues of the real uid' },
  { name: 'nice', resource: 13, procName: 'Max nice priority', meaning: 'ceiling for raising the nice value (20 - limit)' },
  { name: 'rtprio', resource: 14, procName: 'Max realtime priority', meaning: 'highest real-time priority without CAP_SYS_NICE' },
  { name: 'rttime', resource: 15, procName: 'Max realtime timeout', meaning: 'CPU microseconds a real-time task may run without blocking' },
];

/** docker's `--ulimit` refuses `as`; tsrun follows it for the flag but reads it from bundles. */
const DOCKER_NAMES = RLIMITS.filter((r) => r.name !== 'as').map((r) => r.name);
const BY_TYPE = new Map(RLIMITS.map((r) => [`RLIMIT_${r.name.toUpperCase()}`, r]));

export const RLIM_INFINITY = 0xffffffffffffffffn;
/** How RLIM_INFINITY looks in a spec (a JSON number cannot hold 2^64-1 exactly). */
export const SPEC_INFINITY = 2 ** 64 - 1;

/** A spec value as the kernel's rlim_t: -1 and anything >= 2^63 mean unlimited. */
export function toRlim(v: number): bigint {
  if (v < 0 || v >= 2 ** 63) return RLIM_INFINITY;
  return BigInt(v);
}

function fmt(v: bigint): string {
  return v === RLIM_INFINITY ? 'unlimited' : v.toString();
}

function parseValue(s: string, flag: string): number {
  if (s === 'unlimited' || s === '-1') return SPEC_INFINITY;
  if (!/^\d+$/.test(s)) throw new UsageError(`${flag}: "${s}" is not a number (or -1/unlimited)`);
  const n = Number(s);
  if (!Number.isSafeInteger(n)) throw new UsageError(`${flag}: ${s} is too large`);
  return n;
}

/** `name=soft[:hard]` (hard defaults to soft, as in docker). */
export function parseUlimit(text: string, flag = '--ulimit'): Rlimit {
  const m = /^([a-z]+)=([^:]+)(?::(.+))?$/.exec(text.trim());
  if (!m) throw new UsageError(`${flag} ${text}: expected NAME=SOFT[:HARD], e.g. nofile=1024:2048`);
  const [, name, s, h] = m as unknown as [string, string, string, string | undefined];
  if (!DOCKER_NAMES.includes(name)) throw new UsageError(`${flag} ${text}: unknown limit "${name}" (one of ${DOCKER_NAMES.join(', ')})`);
  const soft = parseValue(s, `${flag} ${name}`);
  const hard = h === undefined ? soft : parseValue(h, `${flag} ${name}`);
  if (toRlim(soft) > toRlim(hard)) throw new UsageError(`${flag} ${text}: soft limit ${s} is above the hard limit ${h}`);
  return { type: `RLIMIT_${name.toUpperCase()}`, soft, hard };
}

/** Sets (or replaces, by type) limits in the spec: later wins, as with docker's flags. */
export function setRlimits(spec: Spec, limits: Rlimit[]): void {
  const out = [...(spec.process.rlimits ?? [])];
  for (const l of limits) {
    const i = out.findIndex((x) => x.type === l.type);
    if (i >= 0) out[i] = l;
    else out.push(l);
  }
  spec.process.rlimits = out;
}

export const flags: FlagDef[] = [
  {
    syntax: '--ulimit <name=soft[:hard]>',
    help: `set a resource limit (${DOCKER_NAMES.join(' ')}); -1 or unlimited for no limit`,
    docker: '--ulimit',
    control: 'rlimits',
    repeatable: true,
    apply(spec, value) {
      const list = (Array.isArray(value) ? value : [value]).map(String);
      setRlimits(spec, list.map((v) => parseUlimit(v)));
    },
  },
];

/** Hard limits of the calling process, by resource number, from /proc/self/limits. */
export function parseProcLimits(text: string): Map<number, { soft: bigint; hard: bigint }> {
  const out = new Map<number, { soft: bigint; hard: bigint }>();
  for (const r of RLIMITS) {
    const line = text.split('\n').find((l) => l.startsWith(r.procName + ' '));
    if (!line) continue;
    const [soft, hard] = line.slice(r.procName.length).trim().split(/\s+/);
    const v = (x: string | undefined) => (x === 'unlimited' ? RLIM_INFINITY : BigInt(x ?? '0'));
    out.set(r.resource, { soft: v(soft), hard: v(hard) });
  }
  return out;
}

export interface RlimitHost {
  limits: Map<number, { soft: bigint; hard: bigint }>;
  /** fs.nr_open: the kernel's ceiling for RLIMIT_NOFILE, whatever the capabilities */
  nrOpen: bigint;
}

export function readRlimitHost(): RlimitHost {
  return {
    limits: parseProcLimits(readFileSync('/proc/self/limits', 'utf8')),
    nrOpen: BigInt(readFileSync('/proc/sys/fs/nr_open', 'utf8').trim()),
  };
}

let hostReader: () => RlimitHost = readRlimitHost;
/** Tests inject the host's limits. */
export function setRlimitHostReader(f: () => RlimitHost): void {
  hostReader = f;
}

const CAP_SYS_RESOURCE = 24n;

/**
 * Checks each limit against what setrlimit will allow, so the error comes before anything
 * is created and names the limit instead of "op 17 failed: EPERM".
 */
export function checkRlimits(spec: Spec, capEff: bigint, host: RlimitHost): void {
  const canRaise = ((capEff >> CAP_SYS_RESOURCE) & 1n) === 1n;
  const seen = new Set<string>();
  (spec.process.rlimits ?? []).forEach((l, i) => {
    const f = `process.rlimits[${i}]`;
    const info = BY_TYPE.get(l.type);
    if (!info) throw new SpecError(`${f}.type`, `unknown limit "${l.type}" (one of ${[...BY_TYPE.keys()].join(', ')})`);
    if (seen.has(l.type)) throw new SpecError(`${f}.type`, `${l.type} given twice`);
    seen.add(l.type);
    for (const k of ['soft', 'hard'] as const)
      if (typeof l[k] !== 'number' || !Number.isFinite(l[k])) throw new SpecError(`${f}.${k}`, 'must be a number');
    const soft = toRlim(l.soft);
    const hard = toRlim(l.hard);
    if (soft > hard) throw new SpecError(f, `${l.type} soft ${fmt(soft)} is above hard ${fmt(hard)} (setrlimit EINVAL)`);
    if (info.name === 'nofile' && hard > host.nrOpen)
      throw new SpecError(f, `RLIMIT_NOFILE hard ${fmt(hard)} is above fs.nr_open (${host.nrOpen}): setrlimit fails with EPERM even with CAP_SYS_RESOURCE`);
    const cur = host.limits.get(info.resource);
    if (cur && hard > cur.hard && !canRaise)
      throw new SpecError(
        f,
        `${l.type} (--ulimit ${info.name}) hard ${fmt(hard)} is above tsrun's own hard limit ${fmt(cur.hard)}, and raising a hard limit ` +
          `needs CAP_SYS_RESOURCE, which tsrun lacks here (CapEff ${capEff.toString(16).padStart(16, '0')}): setrlimit would fail with EPERM. ` +
          `Use at most ${fmt(cur.hard)}, e.g. --ulimit ${info.name}=${fmt(cur.hard < soft ? cur.hard : soft)}:${fmt(cur.hard)}`,
      );
  });
}

/**
 * RLIMIT_NPROC set for a container whose processes run as host uid 0: fork(2) never checks
 * it for uid 0 of the initial user namespace (kernel/fork.c: the INIT_USER exemption, as for
 * CAP_SYS_RESOURCE and CAP_SYS_ADMIN), so the limit is silently useless. `origin` names
 * where it came from (--ulimit nproc, or the config file's key).
 */
export function nprocRootWarning(spec: Spec, origin: string): string | undefined {
  if (!(spec.process.rlimits ?? []).some((l) => l.type === 'RLIMIT_NPROC')) return undefined;
  if (spec.process.user.uid !== 0 || spec.linux.namespaces.some((n) => n.type === 'user')) return undefined;
  return `${origin}: RLIMIT_NPROC does not limit this container: it runs as root (uid 0 of the host), which fork(2) exempts from RLIMIT_NPROC; run it as another user (-u UID) or with --userns-remap`;
}

export const control: Control = {
  id: 'rlimits',
  title: 'Resource limits (setrlimit)',
  ref: 'CIS 5.28 (pids/nproc), CIS 2.7 (default ulimits), workshop lab 4',
  validate(ctx: BuildContext): void {
    // Without CAP_SYS_ADMIN this is explain/--dry-run as a user: the limits that matter are
    // those of root's tsrun, not this process's; only the spec's own consistency is checked.
    const planningOnly = ((ctx.host.capEff >> 21n) & 1n) === 0n;
    checkRlimits(ctx.spec, planningOnly ? (1n << CAP_SYS_RESOURCE) : ctx.host.capEff, planningOnly ? { limits: new Map(), nrOpen: RLIM_INFINITY } : hostReader());
  },
  steps(ctx: BuildContext): Step[] {
    return (ctx.spec.process.rlimits ?? []).map((l): ChildStep => {
      const info = BY_TYPE.get(l.type)!;
      const soft = toRlim(l.soft);
      const hard = toRlim(l.hard);
      return {
        where: 'child',
        phase: 'system',
        op: 'SETRLIMIT',
        ints: [BigInt(info.resource), soft, hard],
        strs: [],
        text: `setrlimit(${l.type}, {soft=${fmt(soft)}, hard=${fmt(hard)}})`,
        why: `${info.meaning}; set by init so the command and all its children inherit it`,
        control: 'rlimits',
      };
    });
  },
};
