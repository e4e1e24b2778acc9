import { closeSync, existsSync, fstatSync, mkdirSync, openSync, readdirSync, readFileSync, realpathSync, renameSync, rmSync, statSync, writeFileSync, constants as fsc } from 'node:fs';
import { dirname, join, resolve as resolvePath } from 'node:path';
import { NameInUseError, StateError } from '../errors.js';
import { nativeKernel } from '../kernel/native.js';
import type { ParentStep } from '../plan/types.js';
import type { Spec } from '../spec/types.js';
import type { Paths } from './paths.js';

// A container's state lives in <root>/<id>/ (tmpfs by default, as runc's /run/runc):
//   state.json   what changes (pid, started, paused), rewritten atomically
//   record.json  written once before the clone: what `rm -f` needs to undo the container
//                (its name, data dir, cleanup steps) when state.json is damaged
//   reaper.lock  flock(2)ed by whoever will record the exit (foreground tsrun, tsrun-monitor)
//   exit.json    written by tsrun-monitor (or the foreground tsrun)
// and <root>/<id>.lock, the container's lock, taken for each lifecycle step. No daemon
// holds any of it: every tsrun process reads it, and trusts none of it blindly (design.md
// rule 6): each file is validated when read, and the kernel is asked before acting.
// docs/state.md describes the whole protocol. The json-file log is in the data root
// (src/runtime/logs.ts).

/** `creating`: the state was saved before the clone and its creator still holds the container's lock. */
export type Status = 'creating' | 'created' | 'running' | 'paused' | 'stopped';

export interface ContainerState {
  ociVersion: string;
  id: string;
  name?: string;
  pid: number;
  /** /proc/<pid>/stat starttime: tells our pid from a recycled one */
  pidStart: string;
  bundle: string;
  rootfs: string;
  created: string;
  started?: string;
  annotations: Record<string, string>;
  image?: string;
  containerDir: string;
  /** the fifo `start` opens (OCI create) */
  startFifo?: string;
  /** run -d: tsrun-monitor holds the container's output and reaps it */
  monitorPid?: number;
  /** run -d: the monitor's parent, a subreaper that takes over when the monitor is killed (native/monitor.c) */
  keeperPid?: number;
  /**
   * run -d --rm: remove the container once it exits. The monitor does it; when the monitor
   * was killed, the next tsrun command that finds the container stopped does (see
   * removeOrphans).
   */
  rmOnExit?: boolean;
  /** set by `pause`, cleared by `unpause` (the freezer holds the processes) */
  paused?: boolean;
  /** set until `launch` has the container running (or created): see statusOf */
  creating?: boolean;
  /** what `delete`/`rm` must undo (the plan's cleanup steps) */
  cleanup: ParentStep[];
  /**
   * The cgroup directories tsrun's mkdir made for this container, recorded once the init is
   * cloned: the cleanup kills and removes only these (a linux.cgroupsPath that existed before
   * is joined, never destroyed). Absent: nothing is tsrun's to destroy.
   */
  cgroupsCreated?: string[];
  config: Spec;
}

/** The part of a container that never changes after its creation: kept apart from state.json. */
export interface ContainerRecord {
  id: string;
  name?: string;
  created: string;
  image?: string;
  containerDir: string;
  annotations: Record<string, string>;
  cleanup: ParentStep[];
  /** the cgroup directories tsrun made (known once the init is cloned): the only ones rm -f may empty */
  cgroupsCreated?: string[];
}

/** What reading a state directory gives: a valid state, or a damaged one and why. */
export type Entry =
  | { ok: true; id: string; state: ContainerState }
  | { ok: false; id: string; reason: string; record?: ContainerRecord; unborn?: true };

export interface ExitRecord {
  code?: number;
  signal?: number;
  finishedAt?: string;
  /**
   * Absent: written by the container's reaper (tsrun-monitor, the foreground tsrun).
   * `proc`: its monitor was dead, and a tsrun command read the status of the unreaped
   * zombie from /proc/<pid>/stat (exitZombie).
   */
  source?: 'proc';
}

export const stateDirOf = (p: Paths, id: string) => join(p.root, id);
const stateFile = (p: Paths, id: string) => join(stateDirOf(p, id), 'state.json');
const recordFile = (p: Paths, id: string) => join(stateDirOf(p, id), 'record.json');
export const exitFile = (p: Paths, id: string) => join(stateDirOf(p, id), 'exit.json');
export const containerLockPath = (p: Paths, id: string) => join(p.root, `${id}.lock`);
export const reaperLockPath = (p: Paths, id: string) => join(stateDirOf(p, id), 'reaper.lock');
const ID = /^[0-9a-zA-Z][0-9a-zA-Z_.-]*$/;

function atomicWrite(path: string, data: string): void {
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, data, { mode: 0o600 });
  renameSync(tmp, path);
}

export function saveState(p: Paths, s: ContainerState): void {
  mkdirSync(stateDirOf(p, s.id), { recursive: true, mode: 0o700 });
  atomicWrite(stateFile(p, s.id), JSON.stringify(s, null, 2));
}

export function saveRecord(p: Paths, s: ContainerState): void {
  const r: ContainerRecord = { id: s.id, ...(s.name ? { name: s.name } : {}), created: s.created, ...(s.image ? { image: s.image } : {}), containerDir: s.containerDir, annotations: s.annotations, cleanup: s.cleanup, ...(s.cgroupsCreated ? { cgroupsCreated: s.cgroupsCreated } : {}) };
  atomicWrite(recordFile(p, s.id), JSON.stringify(r, null, 2));
}

/** A valid state, or undefined when there is none or it is damaged (see readEntry). */
export function loadState(p: Paths, id: string): ContainerState | undefined {
  const e = readEntry(p, id);
  return e?.ok ? e.state : undefined;
}

/** Reads and validates <root>/<id>/; undefined when the directory does not exist. */
export function readEntry(p: Paths, id: string): Entry | undefined {
  if (!ID.test(id) || !existsSync(stateDirOf(p, id))) return undefined;
  const read = (file: string): { json?: unknown; error?: string } => {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (e) {
      return { error: (e as NodeJS.ErrnoException).code ?? String(e) };
    }
    try {
      return { json: JSON.parse(text) as unknown };
    } catch (e) {
      return { error: `not JSON (${(e as Error).message}; ${text.length} bytes)` };
    }
  };
  const st = read(stateFile(p, id));
  const why = st.error ?? validateState(st.json, id);
  if (!why) return { ok: true, id, state: st.json as ContainerState };
  const rec = read(recordFile(p, id));
  const record = !rec.error && !validateRecord(rec.json, id) ? (rec.json as ContainerRecord) : undefined;
  // launch saves state.json first, record.json next, and clones only after both: a creator
  // killed inside that first save leaves nothing but its temp file (or an empty directory),
  // and nothing of the container (cgroup, mount, process) can exist yet
  let unborn = false;
  if (st.error === 'ENOENT' && rec.error === 'ENOENT') {
    let files: string[];
    try {
      files = readdirSync(stateDirOf(p, id));
    } catch (e) {
      // removed meanwhile (its rm, or a run --rm ending): no entry any more
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw e;
    }
    unborn = files.every((f) => /^state\.json\.\d+\.tmp$/.test(f));
  }
  return { ok: false, id, reason: `state.json: ${why}`, ...(record ? { record } : {}), ...(unborn ? { unborn: true as const } : {}) };
}

export function removeState(p: Paths, id: string): void {
  rmSync(stateDirOf(p, id), { recursive: true, force: true });
}

/** Every container directory of the root, valid or damaged. */
export function listEntries(p: Paths): Entry[] {
  if (!existsSync(p.root)) return [];
  return readdirSync(p.root)
    .filter((d) => ID.test(d) && !d.endsWith('.lock'))
    .map((id) => readEntry(p, id))
    .filter((e): e is Entry => e !== undefined)
    // a directory without a valid state while its lock is held is being made or removed
    .filter((e) => e.ok || !lockBusy(containerLockPath(p, e.id)));
}

/** The containers whose state is valid (damaged ones are in listEntries). */
export function listStates(p: Paths): ContainerState[] {
  return listEntries(p).flatMap((e) => (e.ok ? [e.state] : []));
}

/** The name a container holds, from its state or, when that is damaged, its record. */
export const nameOf = (e: Entry): string | undefined => (e.ok ? e.state.name : e.record?.name);

// ---- validation: a state file is evidence, not truth (design.md rule 6) ----

const isObj = (x: unknown): x is Record<string, unknown> => typeof x === 'object' && x !== null && !Array.isArray(x);
const isStr = (x: unknown): x is string => typeof x === 'string';
const optStr = (x: unknown) => x === undefined || isStr(x);

/** Cleanup steps may only undo what tsrun makes for this container (design.md rule 5). */
function validateCleanup(steps: unknown, containerDir: string): string | undefined {
  if (!Array.isArray(steps)) return 'cleanup is not a list';
  for (const [i, c] of steps.entries()) {
    if (!isObj(c) || c.where !== 'parent' || c.phase !== 'cleanup' || !isStr(c.action) || !isStr(c.text)) return `cleanup[${i}] is not a cleanup step`;
    if (c.action === 'remove') {
      if (c.path !== containerDir) return `cleanup[${i}] removes ${JSON.stringify(c.path)}, not the container's directory`;
    } else if (c.action === 'cgroup') {
      if (!isStr(c.path) || !c.path.startsWith('/') || c.path.split('/').includes('..') || !['oom-check', 'kill', 'remove'].includes(String(c.verb))) return `cleanup[${i}] is not a cgroup cleanup`;
    } else if (c.action === 'network-names') {
      if (c.command !== 'leave' || !isStr(c.netDir) || !isStr(c.network) || !isStr(c.containerId)) return `cleanup[${i}] is not a network-names leave`;
    } else if (c.action !== 'cni' && c.action !== 'bridge-port') {
      return `cleanup[${i}]: ${JSON.stringify(c.action)} is no cleanup action`;
    }
  }
  return undefined;
}

function validateCommon(x: Record<string, unknown>, id: string): string | undefined {
  if (x.id === undefined) return 'no id';
  if (x.id !== id) return `id ${JSON.stringify(x.id)} is not its directory's (${id})`;
  if (!optStr(x.name) || (isStr(x.name) && !ID.test(x.name))) return 'name is not a container name';
  if (!isStr(x.created)) return 'created is not a string';
  if (!optStr(x.image)) return 'image is not a string';
  // its data directory is <data root>/containers/<id> (of this data root, or of the one given
  // when it was made): the only directory its cleanup may remove
  const cd = x.containerDir;
  if (!isStr(cd) || resolvePath(cd) !== cd || !cd.endsWith(`/containers/${id}`)) return `containerDir ${JSON.stringify(cd)} is not a <data root>/containers/${id}`;
  if (!isObj(x.annotations) || !Object.values(x.annotations).every(isStr)) return 'annotations are not strings';
  return validateCleanup(x.cleanup, x.containerDir as string);
}

/** Why `x` is not a state tsrun can act on, or undefined when it is. */
export function validateState(x: unknown, id: string): string | undefined {
  if (!isObj(x)) return `not an object (${x === null ? 'null' : Array.isArray(x) ? 'array' : typeof x})`;
  const common = validateCommon(x, id);
  if (common) return common;
  if (!Number.isSafeInteger(x.pid) || (x.pid as number) < 0) return `pid ${JSON.stringify(x.pid)} is not a process id`;
  if (!isStr(x.pidStart) || !/^\d*$/.test(x.pidStart)) return 'pidStart is not a start time';
  if (!isStr(x.ociVersion) || !isStr(x.bundle) || !isStr(x.rootfs)) return 'ociVersion, bundle or rootfs is not a string';
  if (!optStr(x.started) || !optStr(x.startFifo)) return 'started or startFifo is not a string';
  if (x.monitorPid !== undefined && (!Number.isSafeInteger(x.monitorPid) || (x.monitorPid as number) <= 0)) return 'monitorPid is not a process id';
  if (x.keeperPid !== undefined && (!Number.isSafeInteger(x.keeperPid) || (x.keeperPid as number) <= 0)) return 'keeperPid is not a process id';
  if ((x.paused !== undefined && typeof x.paused !== 'boolean') || (x.creating !== undefined && typeof x.creating !== 'boolean') || (x.rmOnExit !== undefined && typeof x.rmOnExit !== 'boolean')) return 'paused, creating or rmOnExit is not a boolean';
  const c = x.config;
  if (!isObj(c) || !isObj(c.process) || !Array.isArray(c.process.args) || !c.process.args.every(isStr)) return 'config.process.args is not a list of strings';
  if (!isObj(c.root) || !isStr(c.root.path)) return 'config.root.path is not a string';
  if (!isObj(c.linux) || !Array.isArray(c.linux.namespaces) || !c.linux.namespaces.every((n) => isObj(n) && isStr(n.type))) return 'config.linux.namespaces is not a list of namespaces';
  if (c.mounts !== undefined && (!Array.isArray(c.mounts) || !c.mounts.every((m) => isObj(m) && isStr(m.destination)))) return 'config.mounts is not a list of mounts';
  return undefined;
}

export function validateRecord(x: unknown, id: string): string | undefined {
  if (!isObj(x)) return 'not an object';
  return validateCommon(x, id);
}

export function readExit(p: Paths, id: string): ExitRecord | undefined {
  try {
    const x = JSON.parse(readFileSync(exitFile(p, id), 'utf8')) as unknown;
    // evidence, not truth (rule 6): a record without a usable code or signal is no record
    if (!isObj(x)) return undefined;
    if (!(Number.isSafeInteger(x.code) && (x.code as number) >= 0 && (x.code as number) <= 255) && !(Number.isSafeInteger(x.signal) && (x.signal as number) > 0 && (x.signal as number) < 128)) return undefined;
    return x as ExitRecord;
  } catch {
    return undefined;
  }
}

/** docker's exit code: the process's, or 128 + the signal that killed it. */
export const exitCodeOf = (e: ExitRecord): number => e.code ?? 128 + (e.signal ?? 0);

export function saveExit(p: Paths, id: string, e: ExitRecord): void {
  atomicWrite(exitFile(p, id), JSON.stringify(e) + '\n');
}

/**
 * Whether a detached container lost its tsrun-monitor: it had one, nobody holds its reaper
 * lock (the kernel dropped the monitor's flock when it died) and the monitor wrote no exit
 * record. The lock is tested first: the monitor writes exit.json before it closes the lock,
 * so a free lock and then no record means the monitor died without recording.
 */
export function monitorGone(s: ContainerState, p: Paths): boolean {
  if (!s.monitorPid) return false;
  // no lock file: the container was removed meanwhile (run -d --rm), not abandoned
  const l = tryLock(reaperLockPath(p, s.id), { create: false, unlink: false, mode: 'sh' });
  if (l === undefined || l === 'absent') return false;
  l.release();
  const e = readExit(p, s.id);
  return e === undefined || e.source !== undefined;
}

/**
 * The exit status of the container's init while it is an unreaped zombie whose start time
 * is the state's (proc(5): /proc/<pid>/stat field 52, exit_code, in waitpid(2)'s form). Its
 * new parent (the nearest subreaper, else pid 1) reaps it when it likes; until then the
 * kernel still holds the status.
 */
export function exitZombie(s: Pick<ContainerState, 'pid' | 'pidStart'>): ExitRecord | undefined {
  if (s.pid <= 0) return undefined;
  let stat: string;
  try {
    stat = readFileSync(`/proc/${s.pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // f[0] is field 3 (state), so field n is f[n - 3]
  if (f[0] !== 'Z' || f[19] !== s.pidStart || f[49] === undefined) return undefined;
  const status = Number(f[49]);
  if (!Number.isSafeInteger(status)) return undefined;
  return status & 0x7f ? { signal: status & 0x7f } : { code: (status >> 8) & 0xff };
}

/** starttime of a live, non-zombie process, or undefined (proc(5), /proc/pid/stat field 22). */
export function processStart(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (fields[0] === 'Z' || fields[0] === 'X') return undefined;
    return fields[19];
  } catch {
    return undefined;
  }
}

export function isAlive(s: Pick<ContainerState, 'pid' | 'pidStart'>): boolean {
  return s.pid > 0 && processStart(s.pid) === s.pidStart;
}

/**
 * With `p`, a state still marked `creating` whose creator holds the container's lock is
 * `creating` (never `stopped`: its pid may not be saved yet); a creator that died left
 * whatever its pid says. Without `p` (callers holding the lock themselves) liveness decides.
 */
export function statusOf(s: ContainerState, p?: Paths): Status {
  if (s.creating && p && lockBusy(containerLockPath(p, s.id))) return 'creating';
  if (!isAlive(s)) return 'stopped';
  if (s.startFifo && existsSync(s.startFifo)) return 'created';
  if (s.paused) return 'paused';
  return 'running';
}

/** Resolves an id, a unique id prefix or a name (damaged containers too); suggests close matches when none fits. */
export function findEntry(p: Paths, ref: string): Entry {
  const direct = readEntry(p, ref);
  if (direct) return direct;
  const all = listEntries(p);
  const exact = all.find((e) => nameOf(e) === ref);
  if (exact) return exact;
  const byPrefix = ref.length >= 3 ? all.filter((e) => e.id.startsWith(ref)) : [];
  if (byPrefix.length === 1) return byPrefix[0]!;
  if (byPrefix.length > 1) throw new StateError(`container ${JSON.stringify(ref)} is ambiguous: ${byPrefix.map((e) => e.id.slice(0, 12)).join(', ')}`);
  const near = all
    .flatMap((e) => [nameOf(e), e.id.slice(0, 12)].filter((x): x is string => Boolean(x)))
    .filter((x) => editDistance(x, ref) <= Math.max(2, ref.length >> 2))
    .slice(0, 3);
  throw new StateError(`no such container: ${JSON.stringify(ref)}${near.length ? ` (did you mean ${near.map((n) => JSON.stringify(n)).join(' or ')}?)` : ''}`);
}

/** A container whose state tsrun can act on; a damaged one is refused, naming the verbs that still work. */
export function findContainer(p: Paths, ref: string): ContainerState {
  const e = findEntry(p, ref);
  if (e.ok) return e.state;
  throw new StateError(`container ${e.record?.name ?? e.id.slice(0, 12)} is damaged (${e.reason}): only inspect, ps and rm -f (OCI delete --force) handle it`);
}

function editDistance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0]![j] = j;
  for (let i = 1; i <= a.length; i++)
    for (let j = 1; j <= b.length; j++) d[i]![j] = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
  return d[a.length]![b.length]!;
}

// ---- locks: flock(2), which the kernel releases when its holder dies ----
// A lock is a file <dir>/<key>.lock. Locks of older tsrun versions were directories with the
// holder's pid inside: a dead holder's pid, reused by an unrelated process, kept them "held"
// for ever. Now the kernel knows who holds a lock, and a directory left by an older version is
// simply locked too (flock works on a directory fd) and removed on release.

export interface Lock {
  fd: number;
  /** drops the lock; a key lock's file is unlinked first (waiters notice and retry) */
  release(): void;
}

function openLockFile(path: string, create: boolean): number | undefined {
  try {
    return openSync(path, fsc.O_RDONLY | (create ? fsc.O_CREAT : 0), 0o600);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' && !create) return undefined;
    if (code !== 'EISDIR') throw e;
    try {
      return openSync(path, fsc.O_RDONLY | fsc.O_DIRECTORY);
    } catch (e2) {
      if ((e2 as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw e2;
    }
  }
}

function sameFile(fd: number, path: string): boolean {
  try {
    const a = fstatSync(fd, { bigint: true });
    const b = statSync(path, { bigint: true });
    return a.ino === b.ino && a.dev === b.dev;
  } catch {
    return false;
  }
}

/**
 * One attempt, never blocking. `unlink`: the file goes on release, so no lock file outlives
 * its use; a waiter that locked the unlinked file sees that the path names another file (or
 * none) and starts over, which keeps the exclusion exact.
 */
export function tryLock(path: string, opts: { create?: boolean; unlink?: boolean; mode?: 'sh' | 'ex' } = {}): Lock | undefined | 'absent' {
  const { create = true, unlink = true, mode = 'ex' } = opts;
  for (;;) {
    const fd = openLockFile(path, create);
    if (fd === undefined) return 'absent';
    let got = false;
    try {
      got = nativeKernel.flock(fd, mode);
    } finally {
      if (!got) closeSync(fd);
    }
    if (!got) return undefined;
    if (!sameFile(fd, path)) {
      closeSync(fd);
      if (!create) return 'absent';
      continue;
    }
    return {
      fd,
      release: () => {
        if (unlink) rmSync(path, { recursive: true, force: true });
        closeSync(fd);
      },
    };
  }
}

/** Whether another open file description holds the lock (tested with a shared lock, dropped at once). */
export function lockBusy(path: string): boolean {
  const l = tryLock(path, { create: false, unlink: false, mode: 'sh' });
  if (l === undefined) return true;
  if (l !== 'absent') l.release();
  return false;
}

/** Waits (polling: a timeout must stay possible) for an exclusive lock on `path`. */
export async function acquire(path: string, what: string, timeoutMs = 10_000, opts: { create?: boolean; unlink?: boolean } = {}): Promise<Lock | 'absent'> {
  const deadline = Date.now() + timeoutMs;
  for (let delay = 1; ; delay = Math.min(delay * 2, 10)) {
    const l = tryLock(path, opts);
    if (l !== undefined) return l;
    if (Date.now() > deadline) throw new StateError(`${what} is locked by another tsrun process (${path}) for over ${Math.round(timeoutMs / 1000)} s`);
    await new Promise((r) => setTimeout(r, delay));
  }
}

/** Runs `fn` holding <root>/<key>.lock (a container id, `names`, `networks`, ...). */
export async function withLock<T>(p: Paths, key: string, fn: () => T | Promise<T>): Promise<T> {
  mkdirSync(p.root, { recursive: true, mode: 0o700 });
  const l = (await acquire(join(p.root, `${key}.lock`), key)) as Lock;
  try {
    return await fn();
  } finally {
    l.release();
  }
}

/** Lock files nobody holds (their holder was killed before removing them), and lock directories of older versions. */
export function removeStaleLocks(p: Paths): string[] {
  if (!existsSync(p.root)) return [];
  const removed: string[] = [];
  for (const d of readdirSync(p.root).filter((d) => d.endsWith('.lock'))) {
    const l = tryLock(join(p.root, d), { create: false });
    if (l === undefined || l === 'absent') continue;
    l.release();
    removed.push(d);
  }
  return removed;
}

// ---- ownership of data directories (design.md rule 5) ----
// Two state roots may share a data root: each container directory says which root made it,
// and only that root's prune may remove it.

const ownerFile = (dir: string) => join(dir, 'owner');

/** The state root as an absolute path (its real path once it exists). */
export function rootIdentity(p: Paths): string {
  try {
    return realpathSync(p.root);
  } catch {
    return resolvePath(p.root);
  }
}

export function markOwner(p: Paths, dir: string): void {
  // the parents search-only (711), as the userns control makes them: a remapped root (an
  // unprivileged host uid) must still reach its own directory below them
  mkdirSync(dirname(dir), { recursive: true, mode: 0o711 });
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  atomicWrite(ownerFile(dir), JSON.stringify({ root: rootIdentity(p) }) + '\n');
}

/** The root that made a data directory: undefined when it has no (readable) mark. */
export function ownerOf(dir: string): string | undefined {
  try {
    const o = JSON.parse(readFileSync(ownerFile(dir), 'utf8')) as unknown;
    return isObj(o) && isStr(o.root) ? o.root : undefined;
  } catch {
    return undefined;
  }
}

/** Names are unique: taken atomically under the names lock, checked against every state. */
export function assertNameFree(p: Paths, name: string): void {
  if (!/^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/.test(name)) throw new StateError(`--name ${JSON.stringify(name)}: only letters, digits, '_', '.', '-', starting with a letter or digit`);
  // damaged containers too: their record keeps the name until they are removed
  const owner = listEntries(p).find((e) => nameOf(e) === name);
  if (owner) throw new NameInUseError(`--name ${JSON.stringify(name)} is already in use by container ${owner.id.slice(0, 12)}: remove it first (tsrun rm ${name})`);
}
