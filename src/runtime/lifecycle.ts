import { childProcess } from '../builtins.js';
import { closeSync, existsSync, openSync, readdirSync, readFileSync, readlinkSync, readSync, rmdirSync, rmSync, writeFileSync, constants as fsc } from 'node:fs';
import { join } from 'node:path';
import { KernelError, StateError, TsrunError, UnsupportedError } from '../errors.js';
import { errnoName } from '../kernel/errno.js';
import { MONITOR_PATH, nativeKernel } from '../kernel/native.js';
import type { Kernel } from '../kernel/types.js';
import { startFifo } from '../controls/process.js';
import type { ParentStep, Plan } from '../plan/types.js';
import { execParentStep } from './parent-exec.js';
import { cgroupDirsFromSteps, readCgroupFile, targetsFromSteps, wasOomKilled, writeCgroupFile, type CgroupTarget } from '../controls/cgroups/manager.js';
import { hostLayout } from '../controls/cgroups/mode.js';
import { hasHooks, runPoststartHooks, runPoststopHooks, waitForExec } from './hooks.js';
import type { Paths } from './paths.js';
import { startContainer, type Spawner, type Started } from './run.js';
import { logFile, monitorLogArgs, type LogOpts } from './logs.js';
import { removeTree } from './remove-tree.js';
import { closePipes, type StdioMode } from './stdio.js';
import {
  assertNameFree,
  containerLockPath,
  exitCodeOf,
  exitFile,
  exitZombie,
  findContainer,
  findEntry,
  isAlive,
  listEntries,
  lockBusy,
  markOwner,
  monitorGone,
  ownerOf,
  processStart,
  reaperLockPath,
  readEntry,
  readExit,
  removeStaleLocks,
  removeState,
  rootIdentity,
  saveExit,
  saveRecord,
  saveState,
  stateDirOf,
  statusOf,
  tryLock,
  withLock,
  type ContainerState,
  type Entry,
  type Lock,
} from './state.js';

// Container lifecycle without a daemon: every command reads and writes the state dir
// under a per-container lock (flock(2), docs/state.md). `run -d` hands the container to
// tsrun-monitor; OCI `create` leaves it to the caller's subreaper (conmon, containerd-shim),
// as runc does.

const MON_CLONE = 1;
const MON_PID = 2;
const MON_PTY = 3;

function monMsg(type: number, tty: boolean, flags: number, npreserve = 0): Buffer {
  const b = Buffer.alloc(24);
  b.writeUInt32LE(type, 0);
  b.writeUInt32LE(tty ? 1 : 0, 4);
  b.writeBigUInt64LE(BigInt(flags), 8);
  // MON_CLONE: how many of the fds sent are the caller's, for --preserve-fds (native/monitor.c)
  b.writeInt32LE(npreserve, 16);
  return b;
}

/** A spawner that has tsrun-monitor clone the init, so the container outlives tsrun. */
export function monitorSpawner(paths: Paths, id: string, tty: boolean, onExit: string[], kernel: Kernel = nativeKernel, reaperFd?: number, logOpts?: LogOpts) {
  let ctl = -1;
  let monitorPid = 0;
  let keeperPid = 0;
  const spawner: Spawner = (k, plan, cloneFlags, _stdio, cgroupDir, preserveFds = 0) => {
    if (ctl >= 0) k.close(ctl); // a retry without clone3: the first monitor has exited
    const prep = k.prepareSpawn({ initPath: join(MONITOR_PATH, '..', 'tsrun-init'), plan });
    const [mine, theirs] = k.socketpair();
    ctl = mine;
    // fd 4: the reaper lock, held by the monitor until it has written the exit record
    const child = childProcess().spawn(MONITOR_PATH, [...monitorLogArgs(logOpts), logFile(paths, id), exitFile(paths, id), ...onExit], { detached: true, stdio: ['ignore', 'ignore', 'ignore', theirs, reaperFd ?? 'ignore'] });
    child.unref();
    k.close(theirs);
    // the process started is the monitor's keeper (native/monitor.c); the monitor, its child, says its pid in the reply
    keeperPid = child.pid ?? 0;
    monitorPid = keeperPid;
    // the monitor clones: it gets the cgroup2 directory to be born in as a fourth fd
    const cgroupFd = cgroupDir ? openSync(cgroupDir, fsc.O_RDONLY | fsc.O_DIRECTORY) : -1;
    try {
      // --preserve-fds N: the caller's fds 3..3+N-1 (checked by parsePreserveFds to be the
      // caller's, not Node's) go last; the monitor hands them to the spawned child, which puts
      // them at the container's 3..3+N-1 as the addon does for create and a foreground run
      const caller = Array.from({ length: preserveFds }, (_, i) => 3 + i);
      k.sendMsg(ctl, monMsg(MON_CLONE, tty, cloneFlags, preserveFds), [prep.initFd, prep.planFd, prep.childSyncFd, ...(cgroupFd >= 0 ? [cgroupFd] : []), ...caller]);
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
    const mon = Number(reply.readBigUInt64LE(8));
    if (mon > 0 && mon !== keeperPid) monitorPid = mon;
    return { pid, syncFd: prep.syncFd };
  };
  return {
    spawner,
    onPty: (fd: number) => kernel.sendMsg(ctl, monMsg(MON_PTY, true, 0), [fd]),
    monitorPid: () => monitorPid,
    keeperPid: () => keeperPid,
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
  detached?: { rmOnExit: boolean; tsrunArgv: string[]; logOpts?: LogOpts };
  consoleSocket?: string;
  pidFile?: string;
  /** relay (default) or pass tsrun's own 0-2 (OCI create: the engine's pipes); detached containers get the monitor's */
  stdio?: StdioMode;
  kernel?: Kernel;
  /** a foreground run: the caller reaps the container and records its exit, holding the returned reaper lock until then */
  holdReaper?: boolean;
  /** --preserve-fds N (create, foreground run) */
  preserveFds?: number;
}

function cleanupSteps(plan: Plan): ParentStep[] {
  return plan.steps.filter((s): s is ParentStep => s.where === 'parent' && s.phase === 'cleanup');
}

/**
 * Starts a container that lives in the state dir: saved before the clone (so a tsrun
 * killed at any point leaves a record `rm -f` and `system prune` can undo), updated with
 * its pid once the init reports. Its lock is held from before the state exists until the
 * state says running (or created) with its pid: until then it is `creating`, and prune and
 * rm wait or pass (issue 12.1). Its reaper lock is held by whoever will record its exit.
 */
export async function launch(o: LaunchOptions): Promise<{ state: ContainerState; started: Started; reaper?: Lock }> {
  const { plan, paths } = o;
  const kernel = o.kernel ?? nativeKernel;
  const id = plan.id;
  // A PID namespace joined by path, or a new one unshared after joining a user namespace
  // (OP_FORK): the command is the init's child, and the init exits. tsrun-monitor (run -d)
  // watches the init itself, so it would see the container end.
  const forks = plan.steps.some((s) => s.where === 'child' && s.op === 'FORK');
  if (forks && o.detached) throw new UnsupportedError('linux.namespaces: a pid namespace joined by path (or a new one with a user namespace joined by path) works with create/start and a foreground run, not with run -d (tsrun-monitor watches the init, which exits once it has forked the command)');
  // a foreground run waits for the command: as the subreaper it inherits it from the init
  if (forks && !o.detached && !plan.steps.some((s) => s.where === 'child' && s.op === 'WAIT_START')) kernel.setChildSubreaper();
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
    creating: true,
    ...(o.detached?.rmOnExit ? { rmOnExit: true } : {}),
    cleanup: cleanupSteps(plan),
    config: plan.spec,
  };
  if (plan.steps.some((s) => s.where === 'child' && s.op === 'WAIT_START')) state.startFifo = startFifo(state.containerDir);
  let lock: Lock | undefined;
  let reaper: Lock | undefined;
  await withLock(paths, 'names', () => {
    if (o.name) assertNameFree(paths, o.name);
    if (existsSync(stateDirOf(paths, id))) throw new StateError(`container ${id} already exists`);
    // another state root's container of the same id, sharing this data root: not ours to reuse
    const owner = ownerOf(state.containerDir);
    if (owner !== undefined && owner !== rootIdentity(paths)) throw new StateError(`container ${id}: ${state.containerDir} belongs to the state root ${owner}: choose another id`);
    const l = tryLock(containerLockPath(paths, id));
    if (l === undefined || l === 'absent') throw new StateError(`container ${id} is being made by another tsrun process`);
    lock = l;
    try {
      saveState(paths, state);
      const r = tryLock(reaperLockPath(paths, id), { unlink: false });
      if (r === undefined || r === 'absent') throw new StateError(`container ${id}: its reaper lock is taken`);
      reaper = r;
      saveRecord(paths, state);
      markOwner(paths, state.containerDir);
    } catch (e) {
      reaper?.release();
      removeState(paths, id);
      l.release();
      throw e;
    }
  });
  const held = lock!;
  const reaperLock = reaper!;
  const mon = o.detached
    ? monitorSpawner(paths, id, Boolean(plan.spec.process.terminal), o.detached.rmOnExit ? [...o.detached.tsrunArgv, 'rm', '--force', id] : [], kernel, reaperLock.fd, o.detached.logOpts)
    : undefined;
  let started: Started;
  try {
    started = await startContainer({
      plan,
      interactive: o.interactive,
      kernel,
      // the monitor gives the container its own pipes (or the pty) and never sees ours
      stdio: mon ? 'pass' : (o.stdio ?? 'relay'),
      ...(o.bundle ? { bundle: o.bundle } : {}),
      ...(mon ? { spawner: mon.spawner, onPty: mon.onPty } : {}),
      ...(o.preserveFds ? { preserveFds: o.preserveFds } : {}),
      // recorded before the container runs: a tsrun killed from here on leaves a findable container
      onSpawn: (pid, cgroupsCreated) => {
        state.pid = pid;
        state.cgroupsCreated = cgroupsCreated;
        state.pidStart = processStart(pid) ?? '';
        if (mon) {
          state.monitorPid = mon.monitorPid();
          if (mon.keeperPid() !== state.monitorPid) state.keeperPid = mon.keeperPid();
        }
        saveState(paths, state);
        // which cgroups are its own, for an rm -f that finds state.json damaged
        saveRecord(paths, state);
      },
    });
  } catch (e) {
    removeState(paths, id);
    reaperLock.release();
    held.release();
    throw e;
  } finally {
    mon?.done();
  }
  delete state.creating;
  if (started.pid !== state.pid) {
    // the init forked into a joined PID namespace (OP_FORK) and exited: the container is its child
    state.pid = started.pid;
    state.pidStart = processStart(started.pid) ?? '';
  }
  if (started.state === 'running') state.started = new Date().toISOString();
  try {
    saveState(paths, state);
  } finally {
    held.release();
    // run -d: the monitor holds its own copy now; create: the engine's subreaper reaps
    if (!o.holdReaper) reaperLock.release();
  }
  try {
    if (o.pidFile) writeFileSync(o.pidFile, String(started.pid));
    if (o.consoleSocket && started.ptyFd !== undefined) {
      kernel.sendConsole(o.consoleSocket, started.ptyFd);
      kernel.close(started.ptyFd);
    }
  } catch (e) {
    // the caller cannot use a container it has no pid or terminal for: undo it whole
    if (o.holdReaper) reaperLock.release();
    if (started.pipes) closePipes(started.pipes, kernel);
    await deleteContainer(paths, id, true).catch(() => undefined);
    throw e;
  }
  return { state, started, ...(o.holdReaper ? { reaper: reaperLock } : {}) };
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

/** An exact id is read directly; names and id prefixes need the scan. A damaged state is refused. */
export function resolve(paths: Paths, ref: string): ContainerState {
  return findContainer(paths, ref);
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
  // In the host's PID namespace the container's processes are its init and the init's
  // descendants (proc(5) /proc/PID/task/TID/children). Its cgroup may not say: a
  // linux.cgroupsPath that existed before holds other processes too. A process that
  // double-forked away from the init is out of reach here; tsrun's own cgroup kill (when
  // tsrun created the cgroup) still catches it.
  if (shared) return descendants(s.pid);
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

function descendants(root: number): number[] {
  const out: number[] = [];
  const todo = [root];
  while (todo.length && out.length < 100_000) {
    const pid = todo.pop()!;
    out.push(pid);
    let tids: string[] = [];
    try {
      tids = readdirSync(`/proc/${pid}/task`);
    } catch {
      continue; // exited
    }
    for (const tid of tids) {
      try {
        for (const c of readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8').split(' ')) if (/^\d+$/.test(c)) todo.push(Number(c));
      } catch {
        /* exited */
      }
    }
  }
  return out.sort((a, b) => a - b);
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

/** The pids in a container's own cgroups: the kernel's answer, whatever its state file says. */
/** The processes in the container's own cgroups (those tsrun created: a pre-existing one holds others too). */
function cgroupPids(steps: readonly ParentStep[], created: Set<string>): number[] {
  const pids = new Set<number>();
  for (const dir of cgroupDirsFromSteps(steps).filter((d) => created.has(d))) {
    for (const l of (readCgroupFile(join(dir, 'cgroup.procs')) ?? '').split('\n')) if (/^\d+$/.test(l)) pids.add(Number(l));
  }
  return [...pids];
}

const label = (e: Entry) => (e.ok ? e.state.name : e.record?.name) ?? e.id.slice(0, 12);

/** Waits until nobody holds the container's reaper lock (its exit is recorded); false on timeout. */
async function waitReaper(paths: Paths, id: string, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const l = tryLock(reaperLockPath(paths, id), { create: false, unlink: false });
    if (l === 'absent') return true;
    if (l) {
      l.release();
      return true;
    }
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 10));
  }
}

/**
 * OCI delete / docker rm: stop (with force), undo the plan's cleanup steps, drop the state.
 * A damaged state (see readEntry) is removed from its record: its cgroups say which
 * processes are its own (design.md rule 6), and their kill steps end them.
 */
export async function deleteContainer(paths: Paths, ref: string, force: boolean): Promise<void> {
  const id = findEntry(paths, ref).id;
  // 1. under the container's lock: refuse, or kill
  await withLock(paths, id, async () => {
    const e = readEntry(paths, id);
    if (!e) return;
    if (e.ok) {
      const s = e.state;
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
      // the kernel's word over the state's: a creator killed before it saved the pid leaves a
      // "stopped" container whose init runs on, and its monitor waits for it (rule 6)
      if (force && cgroupPids(s.cleanup, createdOf(s)).length) {
        const err = runCleanup(paths, s.cleanup.filter((c) => c.action === 'cgroup' && c.verb === 'kill'), createdOf(s));
        if (err) throw err;
      }
      return;
    }
    if (e.unborn) return;
    if (!e.record) {
      throw new StateError(`container ${e.id.slice(0, 12)} is damaged (${e.reason}) and so is its record.json: tsrun cannot tell which cgroups and mounts are its own; end its processes and remove ${stateDirOf(paths, e.id)} by hand`);
    }
    const live = cgroupPids(e.record.cleanup, createdOf(e.record));
    if (live.length === 0) return;
    if (!force) throw new StateError(`container ${label(e)} is damaged (${e.reason}) and its cgroup still holds ${live.length} process(es): use --force`);
    // the cgroup's kill step: cgroup.kill, or freeze + SIGKILL each + thaw (v1), until empty
    const err = runCleanup(paths, e.record.cleanup.filter((c) => c.action === 'cgroup' && c.verb === 'kill'), createdOf(e.record));
    if (err) throw err;
  });
  // 2. its reaper (the foreground tsrun, tsrun-monitor) records the exit without that lock
  if (!(await waitReaper(paths, id, 10_000))) throw new StateError(`container ${id.slice(0, 12)}: its exit is still being recorded after 10 s (${reaperLockPath(paths, id)} is held)`);
  // 3. under the lock again: undo what it was made with
  await withLock(paths, id, () => {
    const e = readEntry(paths, id);
    if (!e) return; // its reaper removed it (run --rm)
    if (!e.ok && e.unborn) return removeState(paths, id);
    const steps = e.ok ? e.state.cleanup : e.record?.cleanup;
    if (!steps) throw new StateError(`container ${e.id.slice(0, 12)} is damaged and so is its record.json`);
    // the OOM report was given when the container ended; removing it is not news
    const err = runCleanup(paths, steps.filter((c) => !(c.action === 'cgroup' && c.verb === 'oom-check')), e.ok ? createdOf(e.state) : createdOf(e.record ?? {}));
    removeState(paths, id);
    // runtime.md step 13: after the container is destroyed, before delete returns
    if (e.ok && hasHooks(e.state.config, 'poststop')) runPoststopHooks({ id: e.state.id, spec: e.state.config, bundle: e.state.bundle }, e.state.pid);
    if (err) throw err;
  });
}

/**
 * The cgroup directories tsrun created for the container (its state, or its record when the
 * state is damaged): the only ones its cleanup kills and removes. A malformed list counts as none.
 */
function createdOf(x: { cgroupsCreated?: unknown }): Set<string> {
  const c = x.cgroupsCreated;
  return new Set(Array.isArray(c) ? c.filter((d): d is string => typeof d === 'string' && d.startsWith('/')) : []);
}

/** The cleanup steps; a data directory is removed only when this state root made it, a cgroup only when tsrun did (rule 5). */
function runCleanup(paths: Paths, steps: ParentStep[], created: Set<string>): Error | undefined {
  let first: Error | undefined;
  for (const step of steps) {
    try {
      if (step.action === 'remove') {
        const owner = ownerOf(step.path);
        if (owner !== undefined && owner !== rootIdentity(paths)) throw new StateError(`${step.path} belongs to the state root ${owner}, not ${rootIdentity(paths)}: left in place`);
      }
      execParentStep(step, undefined, { created });
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
/** The container's freezer: the v1 freezer directory, or its cgroup2 one on a pure v2 host (from its state). */
function freezerOf(s: ContainerState): { layout: ReturnType<typeof hostLayout>; v1?: CgroupTarget; v2?: CgroupTarget } {
  const layout = hostLayout();
  const targets = targetsFromSteps(layout, s.cleanup);
  const v1 = targets.find((t) => t.hierarchy.version === 1 && t.hierarchy.controllers.includes('freezer'));
  const v2 = layout.mode === 'v2' ? targets.find((t) => t.hierarchy.version === 2) : undefined;
  return { layout, ...(v1 ? { v1 } : {}), ...(v2 ? { v2 } : {}) };
}

/** Thaws a paused container's freezer (the caller holds its lock), so a pending SIGKILL acts. */
function thaw(s: ContainerState): void {
  const { v1, v2 } = freezerOf(s);
  if (v1) writeCgroupFile(join(v1.dir, 'freezer.state'), 'THAWED');
  else if (v2) writeCgroupFile(join(v2.dir, 'cgroup.freeze'), '0');
}

export async function setFrozen(paths: Paths, ref: string, frozen: boolean): Promise<void> {
  const s = resolve(paths, ref);
  await withLock(paths, s.id, async () => {
    const st = statusOf(s);
    if (frozen && st !== 'running') throw new StateError(`container ${s.name ?? s.id.slice(0, 12)} is ${st}: only a running container can be paused`);
    if (!frozen && st !== 'paused') throw new StateError(`container ${s.name ?? s.id.slice(0, 12)} is ${st}, not paused`);
    const f = freezerOf(s);
    const v1 = f.v1?.dir;
    const v2 = f.v2?.dir;
    const dir = v1 ?? v2;
    // the freezer stops every task of the cgroup: in one that existed before the container
    // (linux.cgroupsPath), that includes processes that are not the container's
    if (frozen && dir && !createdOf(s).has(dir)) {
      throw new StateError(`pause ${s.name ?? s.id.slice(0, 12)}: cgroup ${dir} existed before the container (linux.cgroupsPath named it) and was not created by tsrun: freezing it would stop the processes that were there before too`);
    }
    if (v1) {
      writeCgroupFile(join(v1, 'freezer.state'), frozen ? 'FROZEN' : 'THAWED');
      const want = frozen ? 'FROZEN' : 'THAWED';
      for (let i = 0; i < 500 && readCgroupFile(join(v1, 'freezer.state'))?.trim() !== want; i++) await new Promise((r) => setTimeout(r, 10));
    } else if (v2) {
      writeCgroupFile(join(v2, 'cgroup.freeze'), frozen ? '1' : '0');
    } else {
      throw new StateError(`pause needs the freezer cgroup controller, which this host (cgroup mode ${f.layout.mode}) does not have`);
    }
    s.paused = frozen;
    saveState(paths, s);
  });
}

/** Whether the memory limit's OOM killer ended the container (its cgroup must still exist). */
export function oomKilledOf(s: ContainerState): boolean {
  try {
    return wasOomKilled(targetsFromSteps(hostLayout(), s.cleanup));
  } catch {
    return false;
  }
}

/** How a stopped container ended, as far as anyone can know (see exitOf). */
export interface ExitInfo {
  /** docker's ExitCode: null while it runs; -1 when it stopped and nobody can know how */
  exitCode: number | null;
  finishedAt: string | null;
  /** why the code is what it is, when it does not come from the container's reaper */
  note?: string;
}

/**
 * The exit of a stopped container (issue 12.6). Its reaper (tsrun-monitor, the foreground
 * tsrun) writes exit.json right after reaping it, so a container whose init is already
 * dead may not have its record yet: while the reaper lock is held, wait for it (up to
 * `waitMs`) rather than report a null ExitCode. A monitor that was killed records nothing:
 * then the kernel may still hold the status (an unreaped zombie, exitZombie), which is
 * recorded for the next reader; else an OOM kill of its memory cgroup says SIGKILL (137);
 * else the code is -1, with the reason.
 */
export function exitOf(paths: Paths, s: ContainerState, status: string, waitMs = 5_000): ExitInfo {
  if (status !== 'stopped') return { exitCode: null, finishedAt: null };
  let rec = readExit(paths, s.id);
  for (const deadline = Date.now() + waitMs; !rec && lockBusy(reaperLockPath(paths, s.id)) && Date.now() < deadline; ) {
    sleepSync(5);
    rec = readExit(paths, s.id);
  }
  rec ??= readExit(paths, s.id);
  const gone = monitorGone(s, paths);
  const who = `${monitorName(s)} is gone`;
  if (!rec && gone) {
    const z = exitZombie(s);
    if (z) {
      rec = { ...z, finishedAt: new Date().toISOString(), source: 'proc' };
      try {
        saveExit(paths, s.id, rec); // for the next reader: once its new parent reaps it, the kernel forgets
      } catch {
        /* removed meanwhile (rm): nobody left to tell */
      }
    }
  }
  if (rec) {
    const note = rec.source === 'proc' ? `${who}: the exit status was read from the kernel (/proc/${s.pid}/stat exit_code of the unreaped init) when tsrun found it stopped; its output after the monitor died was not logged` : undefined;
    return { exitCode: exitCodeOf(rec), finishedAt: rec.finishedAt ?? null, ...(note ? { note } : {}) };
  }
  if (!gone) return { exitCode: null, finishedAt: null }; // no reaper of tsrun's: an OCI create's engine reaps it
  if (oomKilledOf(s)) return { exitCode: 137, finishedAt: null, note: `${who} and its init was reaped by another process: the exit code 137 (SIGKILL) is inferred from the memory cgroup's oom_kill count` };
  return { exitCode: -1, finishedAt: null, note: `${who} and its init was reaped by another process (its new parent): the exit code is unknown` };
}

/** The monitor and its keeper, as messages name them. */
export const monitorName = (s: ContainerState) => `tsrun-monitor (pid ${s.monitorPid ?? '?'}${s.keeperPid ? `, keeper pid ${s.keeperPid}` : ''})`;

/** What a verb says of a live container whose monitor is gone. */
export function unmonitoredNote(s: ContainerState): string {
  return `${monitorName(s)} is gone: the container's output is not logged any more (its writes fail with EPIPE) and its exit code may not be known; tsrun stop, kill and rm -f still work`;
}

/**
 * `run -d --rm` containers whose monitor was killed and which have stopped since: the
 * monitor would have removed them; the next tsrun command that lists or names them does
 * (docker run --rm: the container does not outlive its process).
 */
export async function removeOrphans(paths: Paths, only?: string): Promise<string[]> {
  const removed: string[] = [];
  for (const e of listEntries(paths)) {
    if (!e.ok || !e.state.rmOnExit || (only !== undefined && e.id !== only)) continue;
    if (statusOf(e.state, paths) !== 'stopped' || !monitorGone(e.state, paths)) continue;
    try {
      await deleteContainer(paths, e.id, false);
      removed.push(e.id);
    } catch {
      /* busy (another step holds it): the next command tries again */
    }
  }
  return removed;
}

/**
 * Containers that are really stopped, and data dirs of this root with no state at all. A
 * container is left alone while a lifecycle step holds its lock (`creating`, rm, start...)
 * or its reaper has not recorded its exit; a damaged one only once its cgroups are empty.
 */
export async function prune(paths: Paths, warn: (m: string) => void = () => undefined): Promise<string[]> {
  const removed: string[] = [];
  for (const { id } of listEntries(paths)) {
    const lock = tryLock(containerLockPath(paths, id));
    if (lock === undefined || lock === 'absent') continue;
    try {
      const e = readEntry(paths, id);
      if (!e) continue;
      if (!e.ok && e.unborn) {
        removeState(paths, id);
        removed.push(id);
        continue;
      }
      // a damaged state is never pruned on its word: only when the kernel says nothing of it runs
      if (!e.ok && !e.record) {
        warn(`container ${id.slice(0, 12)} is damaged (${e.reason}), its record.json too: not pruned (see docs/state.md)`);
        continue;
      }
      if (!e.ok && cgroupPids(e.record!.cleanup, createdOf(e.record!)).length) {
        warn(`container ${label(e)} is damaged (${e.reason}) and its cgroup has processes: not pruned; tsrun rm -f ${label(e)} ends them`);
        continue;
      }
      const reaper = tryLock(reaperLockPath(paths, id), { create: false, unlink: false });
      if (reaper === undefined) continue;
      if (reaper !== 'absent') reaper.release();
      let steps: ParentStep[];
      if (e.ok) {
        if (statusOf(e.state) !== 'stopped') continue;
        steps = e.state.cleanup;
      } else {
        steps = e.record!.cleanup;
      }
      const err = runCleanup(paths, steps.filter((c) => !(c.action === 'cgroup' && c.verb === 'oom-check')), e.ok ? createdOf(e.state) : createdOf(e.record!));
      removeState(paths, id);
      if (err) warn(`container ${id.slice(0, 12)}: ${err.message}`);
      removed.push(id);
    } finally {
      lock.release();
    }
  }
  removeStaleLocks(paths);
  const cdir = join(paths.data, 'containers');
  const me = rootIdentity(paths);
  if (existsSync(cdir)) {
    for (const id of readdirSync(cdir)) {
      if (existsSync(stateDirOf(paths, id))) continue;
      const dir = join(cdir, id);
      const owner = ownerOf(dir);
      if (owner === me) {
        removeTree(dir); // an upper dir holds what the container wrote: any depth
        removed.push(id);
      } else if (owner === undefined) {
        // unmarked: made by an older tsrun, or by one killed before it marked it. Only an
        // empty one can go without knowing whose it is (rmdir(2) refuses any other).
        try {
          rmdirSync(dir);
          removed.push(id);
        } catch {
          /* not empty, or gone */
        }
      }
    }
  }
  return removed;
}
