import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { StateError } from '../errors.js';
import type { ParentStep } from '../plan/types.js';
import type { Spec } from '../spec/types.js';
import type { Paths } from './paths.js';

// A container's state lives in <root>/<id>/ (tmpfs by default, as runc's /run/runc):
// state.json (written atomically), exit.json (written by tsrun-monitor), container.log
// (json-file), and a lock directory. No daemon holds it: every tsrun process reads it.

export type Status = 'created' | 'running' | 'paused' | 'stopped';

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
  /** set by `pause`, cleared by `unpause` (the freezer holds the processes) */
  paused?: boolean;
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

export interface ExitRecord {
  code?: number;
  signal?: number;
  finishedAt?: string;
}

export const stateDirOf = (p: Paths, id: string) => join(p.root, id);
const stateFile = (p: Paths, id: string) => join(stateDirOf(p, id), 'state.json');
export const exitFile = (p: Paths, id: string) => join(stateDirOf(p, id), 'exit.json');
export const logFile = (p: Paths, id: string) => join(stateDirOf(p, id), 'container.log');

function atomicWrite(path: string, data: string): void {
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, data, { mode: 0o600 });
  renameSync(tmp, path);
}

export function saveState(p: Paths, s: ContainerState): void {
  mkdirSync(stateDirOf(p, s.id), { recursive: true, mode: 0o700 });
  atomicWrite(stateFile(p, s.id), JSON.stringify(s, null, 2));
}

export function loadState(p: Paths, id: string): ContainerState | undefined {
  try {
    return JSON.parse(readFileSync(stateFile(p, id), 'utf8')) as ContainerState;
  } catch {
    return undefined;
  }
}

export function removeState(p: Paths, id: string): void {
  rmSync(stateDirOf(p, id), { recursive: true, force: true });
}

export function listStates(p: Paths): ContainerState[] {
  if (!existsSync(p.root)) return [];
  return readdirSync(p.root)
    .filter((d) => /^[0-9a-zA-Z][0-9a-zA-Z_.-]*$/.test(d) && !d.endsWith('.lock'))
    .map((id) => loadState(p, id))
    .filter((s): s is ContainerState => s !== undefined);
}

export function readExit(p: Paths, id: string): ExitRecord | undefined {
  try {
    return JSON.parse(readFileSync(exitFile(p, id), 'utf8')) as ExitRecord;
  } catch {
    return undefined;
  }
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

export function statusOf(s: ContainerState): Status {
  if (!isAlive(s)) return 'stopped';
  if (s.startFifo && existsSync(s.startFifo)) return 'created';
  if (s.paused) return 'paused';
  return 'running';
}

/** Resolves an id, a unique id prefix or a name; suggests close matches when none fits. */
export function findContainer(p: Paths, ref: string): ContainerState {
  const all = listStates(p);
  const exact = all.find((s) => s.id === ref || s.name === ref);
  if (exact) return exact;
  const byPrefix = ref.length >= 3 ? all.filter((s) => s.id.startsWith(ref)) : [];
  if (byPrefix.length === 1) return byPrefix[0]!;
  if (byPrefix.length > 1) throw new StateError(`container ${JSON.stringify(ref)} is ambiguous: ${byPrefix.map((s) => s.id.slice(0, 12)).join(', ')}`);
  const near = all
    .flatMap((s) => [s.name, s.id.slice(0, 12)].filter((x): x is string => Boolean(x)))
    .filter((x) => editDistance(x, ref) <= Math.max(2, ref.length >> 2))
    .slice(0, 3);
  throw new StateError(`no such container: ${JSON.stringify(ref)}${near.length ? ` (did you mean ${near.map((n) => JSON.stringify(n)).join(' or ')}?)` : ''}`);
}

function editDistance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0]![j] = j;
  for (let i = 1; i <= a.length; i++)
    for (let j = 1; j <= b.length; j++) d[i]![j] = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
  return d[a.length]![b.length]!;
}

/**
 * Per-container lock: a directory made atomically with mkdir(2), holding the owner's pid.
 * A lock whose owner is dead (tsrun SIGKILLed mid-command) is taken over.
 */
export async function withLock<T>(p: Paths, key: string, fn: () => T | Promise<T>): Promise<T> {
  mkdirSync(p.root, { recursive: true, mode: 0o700 });
  const dir = join(p.root, `${key}.lock`);
  const deadline = Date.now() + 10_000;
  for (;;) {
    try {
      mkdirSync(dir);
      writeFileSync(join(dir, 'pid'), String(process.pid));
      break;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      if (lockIsStale(dir)) rmSync(dir, { recursive: true, force: true });
      else if (Date.now() > deadline) throw new StateError(`${key} is locked by another tsrun process`);
      else await new Promise((r) => setTimeout(r, 10));
    }
  }
  try {
    return await fn();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function lockIsStale(dir: string): boolean {
  let owner = NaN;
  let age = 0;
  try {
    age = Date.now() - statSync(dir).mtimeMs;
    owner = Number(readFileSync(join(dir, 'pid'), 'utf8'));
  } catch {
    /* being written or removed */
  }
  // its owner died (SIGKILL), even between the mkdir and writing its pid
  return Number.isInteger(owner) && owner > 0 ? processStart(owner) === undefined : age > 1000;
}

/** Locks left by tsrun processes that were killed while holding them. */
export function removeStaleLocks(p: Paths): string[] {
  if (!existsSync(p.root)) return [];
  const stale = readdirSync(p.root)
    .filter((d) => d.endsWith('.lock'))
    .filter((d) => lockIsStale(join(p.root, d)));
  for (const d of stale) rmSync(join(p.root, d), { recursive: true, force: true });
  return stale;
}

/** Names are unique: taken atomically under the names lock, checked against every state. */
export function assertNameFree(p: Paths, name: string): void {
  if (!/^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/.test(name)) throw new StateError(`--name ${JSON.stringify(name)}: only letters, digits, '_', '.', '-', starting with a letter or digit`);
  const owner = listStates(p).find((s) => s.name === name);
  if (owner) throw new StateError(`--name ${JSON.stringify(name)} is already in use by container ${owner.id.slice(0, 12)}: remove it first (tsrun rm ${name})`);
}
