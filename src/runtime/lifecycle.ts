import { childProcess } from '../builtins.js';
import { closeSync, existsSync, openSync, readdirSync, readFileSync, readlinkSync, readSync, rmSync, writeFileSync, constants as fsc } from 'node:fs';
import { join } from 'node:path';
import { KernelError, StateError, TsrunError } from '../errors.js';
import { errnoName } from '../kernel/errno.js';
import { MONITOR_PATH, nativeKernel } from '../kernel/native.js';
import type { Kernel } from '../kernel/types.js';
import { startFifo } from '../controls/process.js';
import type { ParentStep, Plan } from '../plan/types.js';
import { execParentStep } from './parent-exec.js';
import { hasHooks, runPoststartHooks, runPoststopHooks, waitForExec } from './hooks.js';
import { CgroupManager } from '../controls/cgroups/index.js';
import { readCgroupFile, writeCgroupFile } from '../controls/cgroups/manager.js';
import type { Paths } from './paths.js';
import { startContainer, type Spawner, type Started } from './run.js';
import {
  assertNameFree,
  exitFile,
  findContainer,
  isAlive,
  listStates,
  loadState,
  logFile,
  processStart,
  removeStaleLocks,
  removeState,
  saveState,
  stateDirOf,
  statusOf,
  withLock,
  type ContainerState,
} from './state.js';

// Container lifecycle without a daemon: every command reads and writes the state dir
// under a per-container lock. `run -d` hands the container to tsrun-monitor; OCI `create`
// leaves it to the caller's subreaper (conmon, containerd-shim), as runc does.

const MON_CLONE = 1;
const MON_PID = 2;
const MON_PTY = 3;

function monMsg(type: number, tty: boolean, flags: number): Buffer {
  const b = Buffer.alloc(24);
  b.writeUInt32LE(type, 0);
  b.writeUInt32LE(tty ? 1 : 0, 4);
  b.writeBigUInt64LE(BigInt(flags), 8);
  return b;
}

/** A spawner that has tsrun-monitor clone the init, so the container outlives tsrun. */
export function monitorSpawner(paths: Paths, id: string, tty: boolean, onExit: string[], kernel: Kernel = nativeKernel) {
  let ctl = -1;
  let monitorPid = 0;
  const spawner: Spawner = (k, plan, cloneFlags, _stdio, cgroupDir) => {
    if (ctl >= 0) k.close(ctl); // a retry without clone3: the first monitor has exited
    const prep = k.prepareSpawn({ initPath: join(MONITOR_PATH, '..', 'tsrun-init'), plan });
    const [mine, theirs] = k.socketpair();
    ctl = mine;
    const child = childProcess().spawn(MONITOR_PATH, [logFile(paths, id), exitFile(paths, id), ...onExit], { detached: true, stdio: ['ignore', 'ignore', 'ignore', theirs] });
    child.unref();
    k.close(theirs);
    monitorPid = child.pid ?? 0;
    // the monitor clones: it gets the cgroup2 directory to be born in as a fourth fd
    const cgroupFd = cgroupDir ? openSync(cgroupDir, fsc.O_RDONLY | fsc.O_DIRECTORY) : -1;
    try {
      k.sendMsg(ctl, monMsg(MON_CLONE, tty, cloneFlags), [prep.initFd, prep.planFd, prep.childSyncFd, ...(cgroupFd >= 0 ? [cgroupFd] : [])]);
    } finally {
      if (cgroupFd >= 0) closeSync(cgroupFd);
    }
    k.close(prep.planFd);
    k.close(prep.childSyncFd);
    const reply = k.recvMsg(ctl, 24);
    if (!reply) throw new TsrunError('tsrun-monitor exited before cloning the container');
    const pid = reply.readInt32LE(16);
    const err = reply.readInt32LE(20);
    if (reply.readUInt32LE(0) !== MON_PID || pid <= 0) throw new KernelError('clone (tsrun-monitor)', err, errnoName(err), k.strerror(err), 'namespaces');
    return { pid, syncFd: prep.syncFd };
  };
  return {
    spawner,
    onPty: (fd: number) => kernel.sendMsg(ctl, monMsg(MON_PTY, true, 0), [fd]),
    monitorPid: () => monitorPid,
    done: () => {
      if (ctl >= 0) kernel.close(ctl);
      ctl = -1;
    },
  };
}

export interface LaunchOptions {
  plan: Plan;
  paths: Paths;
  name?: string;
  bundle: string;
  image?: string;
  interactive: boolean;
  /** run -d: a monitor owns the container; `rmOnExit` removes it when it ends (run -d --rm) */
  detached?: { rmOnExit: boolean; tsrunArgv: string[] };
  consoleSocket?: string;
  pidFile?: string;
  kernel?: Kernel;
}

function cleanupSteps(plan: Plan): ParentStep[] {
  return plan.steps.filter((s): s is ParentStep => s.where === 'parent' && s.phase === 'cleanup');
}

/**
 * Starts a container that lives in the state dir: saved before the clone (so a tsrun
 * killed at any point leaves a record `rm -f` and `system prune` can undo), updated with
 * its pid once the init reports.
 */
export async function launch(o: LaunchOptions): Promise<{ state: ContainerState; started: Started }> {
  const { plan, paths } = o;
  const kernel = o.kernel ?? nativeKernel;
  const id = plan.id;
  const state: ContainerState = {
    ociVersion: plan.spec.ociVersion,
    id,
    ...(o.name ? { name: o.name } : {}),
    pid: 0,
    pidStart: '',
    bundle: o.bundle,
    rootfs: plan.spec.root.path,
    created: new Date().toISOString(),
    annotations: plan.spec.annotations ?? {},
    ...(o.image ? { image: o.image } : {}),
    containerDir: join(paths.data, 'containers', id),
    cleanup: cleanupSteps(plan),
    config: plan.spec,
  };
  if (plan.steps.some((s) => s.where === 'child' && s.op === 'WAIT_START')) state.startFifo = startFifo(state.containerDir);
  await withLock(paths, 'names', () => {
    if (o.name) assertNameFree(paths, o.name);
    if (loadState(paths, id)) throw new StateError(`container ${id} already exists`);
    saveState(paths, state);
  });
  const mon = o.detached
    ? monitorSpawner(paths, id, Boolean(plan.spec.process.terminal), o.detached.rmOnExit ? [...o.detached.tsrunArgv, 'rm', '--force', id] : [], kernel)
    : undefined;
  let started: Started;
  try {
    started = await startContainer({
      plan,
      interactive: o.interactive,
      kernel,
      ...(o.bundle ? { bundle: o.bundle } : {}),
      ...(mon ? { spawner: mon.spawner, onPty: mon.onPty } : {}),
      // recorded before the container runs: a tsrun killed from here on leaves a findable container
      onSpawn: (pid) => {
        state.pid = pid;
        state.pidStart = processStart(pid) ?? '';
        if (mon) state.monitorPid = mon.monitorPid();
        saveState(paths, state);
      },
    });
  } catch (e) {
    removeState(paths, id);
    throw e;
  } finally {
    mon?.done();
  }
  if (started.state === 'running') state.started = new Date().toISOString();
  saveState(paths, state);
  try {
    if (o.pidFile) writeFileSync(o.pidFile, String(started.pid));
    if (o.consoleSocket && started.ptyFd !== undefined) {
      kernel.sendConsole(o.consoleSocket, started.ptyFd);
      kernel.close(started.ptyFd);
    }
  } catch (e) {
    // the caller cannot use a container it has no pid or terminal for: undo it whole
    await deleteContainer(paths, id, true).catch(() => undefined);
    throw e;
  }
  return { state, started };
}

function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/** OCI start: release a created container by reading its start fifo. */
export async function startCreated(paths: Paths, ref: string): Promise<void> {
  const s = resolve(paths, ref);
  await withLock(paths, s.id, () => {
    const st = statusOf(s);
    if (st !== 'created') throw new StateError(`container ${s.id.slice(0, 12)} is ${st}, not created: only a created container can be started`);
    const fd = openSync(s.startFifo!, fsc.O_RDONLY | fsc.O_NONBLOCK);
    try {
      const buf = Buffer.alloc(1);
      const deadline = Date.now() + 10_000;
      for (;;) {
        try {
          if (readSync(fd, buf) === 1) break;
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code !== 'EAGAIN') throw e;
        }
        if (!isAlive(s)) throw new StateError(`container ${s.id.slice(0, 12)} exited before it started`);
        if (Date.now() > deadline) throw new StateError(`container ${s.id.slice(0, 12)}: its init did not answer the start fifo within 10 s`);
        sleepSync(2);
      }
      // startContainer hooks run after this point and poststart ones only once the command runs
      if (hasHooks(s.config, 'startContainer') || hasHooks(s.config, 'poststart')) waitForExec(fd, s.id, () => isAlive(s));
    } finally {
      closeSync(fd);
      rmSync(s.startFifo!, { force: true });
    }
    s.started = new Date().toISOString();
    saveState(paths, s);
    if (hasHooks(s.config, 'poststart')) {
      try {
        runPoststartHooks({ id: s.id, spec: s.config, bundle: s.bundle }, s.pid);
      } catch (e) {
        // runtime-spec 1.3 runtime.md step 9: a failed poststart hook stops the container
        try {
          process.kill(s.pid, 'SIGKILL');
        } catch {
          /* gone */
        }
        throw e;
      }
    }
  });
}

/** An exact id is read directly; names and id prefixes need the scan. */
export function resolve(paths: Paths, ref: string): ContainerState {
  return loadState(paths, ref) ?? findContainer(paths, ref);
}

/** The pids of every process in the container's PID namespace (OCI `ps`). */
export function containerPids(s: ContainerState): number[] {
  if (!isAlive(s)) return [];
  let ns: string;
  try {
    ns = readlinkSync(`/proc/${s.pid}/ns/pid`);
  } catch {
    return [];
  }
  const shared = !s.config.linux.namespaces.some((n) => n.type === 'pid');
  if (shared) return [s.pid];
  const pids: number[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      if (readlinkSync(`/proc/${d}/ns/pid`) === ns) pids.push(Number(d));
    } catch {
      /* exited */
    }
  }
  return pids.sort((a, b) => a - b);
}

export async function killContainer(paths: Paths, ref: string, signal: NodeJS.Signals | number, all: boolean): Promise<void> {
  const s = resolve(paths, ref);
  if (!isAlive(s)) throw new StateError(`container ${s.id.slice(0, 12)} is not running`);
  for (const pid of all ? containerPids(s) : [s.pid]) {
    try {
      process.kill(pid, signal);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ESRCH') throw e;
    }
  }
  // A frozen task acts on SIGKILL only once thawed: engines kill paused containers (containerd's
  // `task rm -f` sends kill --all 9 and waits), so a paused container is thawed to let it die.
  // SIGKILL to the init ends the whole PID namespace (pid_namespaces(7)), so it stays unpaused.
  if (statusOf(s) === 'paused' && (signal === 'SIGKILL' || signal === 9)) {
    await withLock(paths, s.id, () => {
      thaw(s);
      s.paused = false;
      saveState(paths, s);
    });
  }
}

/** Waits until the container's init is gone (reaped, or a zombie awaiting its parent). */
export async function waitGone(s: ContainerState, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (isAlive(s)) {
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 10));
  }
  return true;
}

/** OCI delete / docker rm: stop (with force), undo the plan's cleanup steps, drop the state. */
export async function deleteContainer(paths: Paths, ref: string, force: boolean): Promise<void> {
  const s = resolve(paths, ref);
  await withLock(paths, s.id, async () => {
    const st = statusOf(s);
    if ((st === 'running' || st === 'paused') && !force) {
      throw new StateError(`container ${s.name ?? s.id.slice(0, 12)} is ${st}: stop it first, or use --force`);
    }
    if (st !== 'stopped') {
      // SIGKILL to PID 1 of a PID namespace kills every process in it (pid_namespaces(7))
      for (const pid of containerPids(s)) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          /* gone */
        }
      }
      // a frozen task only acts on SIGKILL once thawed (engines delete --force paused containers)
      if (st === 'paused') thaw(s);
      if (!(await waitGone(s, 10_000))) throw new StateError(`container ${s.id.slice(0, 12)}: pid ${s.pid} did not die after SIGKILL`);
    }
    // the OOM report was given when the container ended; removing it is not news
    const err = runCleanup(s.cleanup.filter((c) => !(c.action === 'cgroup' && c.verb === 'oom-check')));
    removeState(paths, s.id);
    // runtime.md step 13: after the container is destroyed, before delete returns
    if (hasHooks(s.config, 'poststop')) runPoststopHooks({ id: s.id, spec: s.config, bundle: s.bundle }, s.pid);
    if (err) throw err;
  });
}

function runCleanup(steps: ParentStep[]): Error | undefined {
  let first: Error | undefined;
  for (const step of steps) {
    try {
      execParentStep(step);
    } catch (e) {
      first ??= e as Error;
    }
  }
  return first;
}

/**
 * pause/unpause: the freezer stops every process of the container's cgroup at once, where
 * SIGSTOP could be caught up in a race with forks (cgroup-v1/freezer-subsystem.rst;
 * cgroup-v2.rst "cgroup.freeze"). v1 and hybrid hosts use the freezer hierarchy.
 */
/** Thaws a paused container's freezer (the caller holds its lock), so a pending SIGKILL acts. */
function thaw(s: ContainerState): void {
  const cg = new CgroupManager(s.config, s.id);
  const v1 = cg.dirFor('freezer');
  const v2 = cg.layout.mode === 'v2' ? cg.dirFor('unified') : undefined;
  if (v1) writeCgroupFile(join(v1, 'freezer.state'), 'THAWED');
  else if (v2) writeCgroupFile(join(v2, 'cgroup.freeze'), '0');
}

export async function setFrozen(paths: Paths, ref: string, frozen: boolean): Promise<void> {
  const s = resolve(paths, ref);
  await withLock(paths, s.id, async () => {
    const st = statusOf(s);
    if (frozen && st !== 'running') throw new StateError(`container ${s.name ?? s.id.slice(0, 12)} is ${st}: only a running container can be paused`);
    if (!frozen && st !== 'paused') throw new StateError(`container ${s.name ?? s.id.slice(0, 12)} is ${st}, not paused`);
    const cg = new CgroupManager(s.config, s.id);
    const v1 = cg.dirFor('freezer');
    const v2 = cg.layout.mode === 'v2' ? cg.dirFor('unified') : undefined;
    if (v1) {
      writeCgroupFile(join(v1, 'freezer.state'), frozen ? 'FROZEN' : 'THAWED');
      const want = frozen ? 'FROZEN' : 'THAWED';
      for (let i = 0; i < 500 && readCgroupFile(join(v1, 'freezer.state'))?.trim() !== want; i++) await new Promise((r) => setTimeout(r, 10));
    } else if (v2) {
      writeCgroupFile(join(v2, 'cgroup.freeze'), frozen ? '1' : '0');
    } else {
      throw new StateError(`pause needs the freezer cgroup controller, which this host (cgroup mode ${cg.layout.mode}) does not have`);
    }
    s.paused = frozen;
    saveState(paths, s);
  });
}

/** Whether the memory limit's OOM killer ended the container (its cgroup must still exist). */
export function oomKilledOf(s: ContainerState): boolean {
  try {
    return new CgroupManager(s.config, s.id).oomKilled();
  } catch {
    return false;
  }
}

/** Containers whose state says they exist but whose processes are gone, and data dirs with no state at all. */
export async function prune(paths: Paths): Promise<string[]> {
  const removed: string[] = [];
  for (const s of listStates(paths)) {
    // a stopped container whose monitor is still alive is still writing its exit record
    const monitorDone = !s.monitorPid || processStart(s.monitorPid) === undefined;
    if (statusOf(s) === 'stopped' && monitorDone) {
      await deleteContainer(paths, s.id, true);
      removed.push(s.id);
    }
  }
  removed.push(...removeStaleLocks(paths));
  const cdir = join(paths.data, 'containers');
  if (existsSync(cdir)) {
    for (const id of readdirSync(cdir)) {
      if (!existsSync(stateDirOf(paths, id))) {
        rmSync(join(cdir, id), { recursive: true, force: true });
        removed.push(id);
      }
    }
  }
  return removed;
}

export function readLogLines(paths: Paths, id: string): { log: string; stream: string; time: string }[] {
  try {
    return readFileSync(logFile(paths, id), 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as { log: string; stream: string; time: string });
  } catch {
    return [];
  }
}
