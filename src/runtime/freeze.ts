import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { StateError, UnsupportedError } from '../errors.js';
import { readCgroupFile, sleepMs, writeCgroupFile } from '../controls/cgroups/manager.js';
import type { Paths } from './paths.js';
import { findContainer, loadState, saveState, statusOf, withLock, type ContainerState } from './state.js';

// pause/resume (OCI runtime CLI, as containerd's shim and podman call them; docker's
// pause/unpause): the cgroup freezer stops every process of the container at once, so none
// can run, fork or notice — unlike SIGSTOP, which a process can see and its parent gets
// told of. cgroup v1: freezer.state FROZEN/THAWED, FREEZING until every task stopped
// (Documentation/admin-guide/cgroup-v1/freezer-subsystem.rst); cgroup v2: cgroup.freeze
// 1/0, with "frozen 1" in cgroup.events once done (cgroup-v2.rst "Core Interface Files").

export interface Freezer {
  version: 1 | 2;
  dir: string;
}

/** The container's freezer: the v1 freezer hierarchy's directory, else its cgroup2 directory. */
export function freezerOf(s: ContainerState): Freezer | undefined {
  const dirs = s.cleanup.filter((c) => c.action === 'cgroup' && c.verb === 'remove' && c.value !== 'if-empty').map((c) => (c as { path: string }).path);
  const v1 = dirs.find((d) => existsSync(join(d, 'freezer.state')));
  if (v1) return { version: 1, dir: v1 };
  const v2 = dirs.find((d) => existsSync(join(d, 'cgroup.freeze')));
  return v2 ? { version: 2, dir: v2 } : undefined;
}

function frozen(f: Freezer): boolean {
  if (f.version === 1) return (readCgroupFile(join(f.dir, 'freezer.state')) ?? '').trim() === 'FROZEN';
  return /^frozen 1$/m.test(readCgroupFile(join(f.dir, 'cgroup.events')) ?? '');
}

/** Writes the freezer and waits (bounded) until the kernel reports every task stopped. */
export function setFrozen(f: Freezer, on: boolean, timeoutMs = 5000): void {
  if (f.version === 1) writeCgroupFile(join(f.dir, 'freezer.state'), on ? 'FROZEN' : 'THAWED');
  else writeCgroupFile(join(f.dir, 'cgroup.freeze'), on ? '1' : '0');
  if (!on) return;
  const end = Date.now() + timeoutMs;
  while (!frozen(f)) {
    if (Date.now() > end) {
      // a task in uninterruptible sleep can hold FREEZING: do not leave the container half frozen
      setFrozen(f, false);
      throw new StateError(`${f.dir}: the freezer did not reach FROZEN within ${timeoutMs / 1000} s; thawed again`);
    }
    sleepMs(2);
  }
}

function freezerOrThrow(s: ContainerState): Freezer {
  const f = freezerOf(s);
  if (!f) throw new UnsupportedError(`container ${s.id.slice(0, 12)} has no freezer cgroup (no freezer controller in cgroup v1, no cgroup.freeze in cgroup v2): cannot pause it`);
  return f;
}

export async function pauseContainer(paths: Paths, ref: string): Promise<void> {
  const s = loadState(paths, ref) ?? findContainer(paths, ref);
  await withLock(paths, s.id, () => {
    const st = statusOf(s);
    if (st !== 'running') throw new StateError(`container ${s.name ?? s.id.slice(0, 12)} is ${st}: only a running container can be paused`);
    setFrozen(freezerOrThrow(s), true);
    s.paused = true;
    saveState(paths, s);
  });
}

export async function resumeContainer(paths: Paths, ref: string): Promise<void> {
  const s = loadState(paths, ref) ?? findContainer(paths, ref);
  await withLock(paths, s.id, () => {
    const st = statusOf(s);
    if (st !== 'paused') throw new StateError(`container ${s.name ?? s.id.slice(0, 12)} is ${st}, not paused`);
    setFrozen(freezerOrThrow(s), false);
    s.paused = false;
    saveState(paths, s);
  });
}
