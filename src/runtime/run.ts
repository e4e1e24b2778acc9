import { createReadStream, openSync, closeSync, writeSync } from 'node:fs';
import { tty } from '../builtins.js';
import { constants as osConstants } from 'node:os';
import { ExecError, KernelError, TsrunError } from '../errors.js';
import { errnoName, errnoOf } from '../kernel/errno.js';
import { INIT_PATH, nativeKernel } from '../kernel/native.js';
import type { Kernel } from '../kernel/types.js';
import { CLONE, type CloneFlag } from '../plan/ops.js';
import { encodePlan } from '../plan/encode.js';
import { childSteps } from '../plan/build.js';
import { MSG } from '../plan/protocol.js';
import { quoteValue } from '../spec/quote.js';

/** execve(2): the longest single argument or variable, terminating NUL included (32 pages). */
const MAX_ARG_STRLEN = 131072;
import type { ParentStep, Plan } from '../plan/types.js';
import { execParentStep } from './parent-exec.js';
import { closePipes, makePipes, relayPipes, type StdioMode, type StdioPipes } from './stdio.js';
import { initHookError, runCreateHooks, runPlanHooks } from './hooks.js';

/** Clones the init: the addon in this process, or tsrun-monitor for detached containers. */
export type Spawner = (kernel: Kernel, plan: Uint8Array, cloneFlags: number, stdio: [number, number, number], cgroupDir?: string, preserveFds?: number) => { pid: number; syncFd: number };

export const spawnHere: Spawner = (kernel, plan, cloneFlags, stdio, cgroupDir, preserveFds) =>
  kernel.spawn({ initPath: INIT_PATH, plan, cloneFlags, stdio, ...(cgroupDir ? { cgroupDir } : {}), ...(preserveFds ? { preserveFds } : {}) });

const ENOSYS = osConstants.errno.ENOSYS;

export interface StartOptions {
  plan: Plan;
  /** docker -i: the container's stdin is tsrun's (relayed, or passed); else /dev/null */
  interactive: boolean;
  /** relay (default): pipes copied by attachAndWait; pass: tsrun's own 0-2 (OCI create, exec --detach) */
  stdio?: StdioMode;
  kernel?: Kernel;
  spawner?: Spawner;
  /** --preserve-fds N: the caller's fds 3..3+N-1 become the container's (not with a spawner of its own) */
  preserveFds?: number;
  /** the pty master, as soon as the init sends it (detached runs hand it to the monitor) */
  onPty?: (fd: number) => void;
  /** the pid, as soon as the clone returned: before GO, so before any of the container's code runs;
   *  with the cgroup directories tsrun created for it (the only ones its cleanup may destroy) */
  onSpawn?: (pid: number, cgroupsCreated: string[]) => void;
  /** absolute bundle directory, for the state OCI hooks get (src/runtime/hooks.ts) */
  bundle?: string;
}

export interface Started {
  pid: number;
  /** pty master when the spec asks for a terminal */
  ptyFd?: number;
  /** where the init stopped: exec'd, or waiting for `start` */
  state: 'running' | 'created';
  /** forward tsrun's stdin (docker -i) */
  interactive: boolean;
  syncFd: number;
  /** the cgroup directories tsrun's mkdir made for this container (cleanup destroys only these) */
  cgroupsCreated: string[];
  /** tsrun's ends of the container's stdio pipes (relay mode, no terminal) */
  pipes?: StdioPipes;
  /** the bundle, for the poststop hooks of a foreground run */
  bundle?: string;
}

const INIT_EXEC_INDEX = 0xffffffff;
const INIT_ID_SWITCH_INDEX = 0xfffffffe;

function parentSteps(plan: Plan, phase: ParentStep['phase']): ParentStep[] {
  return plan.steps.filter((s): s is ParentStep => s.where === 'parent' && s.phase === phase);
}

/**
 * The cleanup steps due as soon as the container exits, even when it is kept until `rm`
 * (docker's stop): the OOM report, and its place on a network — address, published ports,
 * its name in the other members' /etc/hosts. `rm` repeats them harmlessly.
 */
export function dueAtExit(s: ParentStep): boolean {
  return (s.action === 'cgroup' && s.verb === 'oom-check') || s.action === 'cni' || s.action === 'network-names';
}

/**
 * Best effort: every cleanup step runs even when one fails; the first error is returned.
 * `cgroupsCreated`: the cgroup directories tsrun made for this container, the only ones it kills and removes.
 */
export function cleanup(plan: Plan, only: (s: ParentStep) => boolean = () => true, cgroupsCreated: Iterable<string> = []): Error | undefined {
  let first: Error | undefined;
  const created = new Set(cgroupsCreated);
  for (const s of parentSteps(plan, 'cleanup').filter(only)) {
    try {
      execParentStep(s, undefined, { created });
    } catch (e) {
      first ??= e as Error;
    }
  }
  return first;
}

function childError(plan: Plan, index: number, err: number, kernel: Kernel): TsrunError {
  const name = errnoName(err);
  const msg = kernel.strerror(err);
  if (index === INIT_ID_SWITCH_INDEX) return new KernelError('setgroups(0), setresgid(0), setresuid(0) in the new user namespace (are container uid 0 and gid 0 mapped?)', err, name, msg, 'userns');
  if (index === INIT_EXEC_INDEX) return new KernelError('execveat(sealed memfd "tsrun-init")', err, name, msg, 'namespaces');
  const step = childSteps(plan)[index];
  if (!step) return new KernelError(`plan operation #${index}`, err, name, msg);
  if (step.op === 'RUN_HOOK') return initHookError(step, err, (e) => kernel.strerror(e));
  if (step.op === 'EXEC') {
    const file = quoteValue(step.strs[0]!);
    // docker's exit codes: 127 the command was not found, 126 it cannot be executed
    if (err === osConstants.errno.ENOENT || err === osConstants.errno.ENOTDIR) {
      return new ExecError(step.strs[0]!.includes('/') ? `exec ${file}: no such file or directory in the container` : `exec ${file}: executable file not found in $PATH`, 127);
    }
    if (err === osConstants.errno.EACCES || err === osConstants.errno.ENOEXEC || err === osConstants.errno.EISDIR) {
      return new ExecError(`exec ${file}: not executable: ${name} (${msg})`, 126);
    }
    if (err === osConstants.errno.E2BIG) {
      // The command is there and executable; what tsrun was asked to pass is more than the
      // kernel takes. That is the request's fault, not the command's: 125, as docker gives
      // for every start error other than "not found" (127) and "permission denied" (126).
      const { args, env = [] } = plan.spec.process;
      const all = [...args, ...env];
      const total = all.reduce((n, s) => n + Buffer.byteLength(s) + 1, 0);
      const longest = all.reduce((n, s) => Math.max(n, Buffer.byteLength(s) + 1), 0);
      return new TsrunError(
        `exec ${file}: ${name} (${msg}): ${args.length} arguments and ${env.length} environment variables, ${total} bytes, the longest ${longest}; ` +
          `the kernel takes at most ${MAX_ARG_STRLEN} bytes per string (MAX_ARG_STRLEN) and a quarter of the stack limit in all (ARG_MAX, execve(2))`,
      );
    }
  }
  return new KernelError(step.text, err, name, msg, step.control);
}

/** The addon's errors ({errno, syscall}) as one line naming the call and the errno by name. */
function spawnError(e: unknown, kernel: Kernel): unknown {
  const en = errnoOf(e);
  if (e instanceof TsrunError || !en) return e;
  const what = (e as { syscall?: string }).syscall ?? 'clone';
  return new KernelError(what, en.errno, en.name, kernel.strerror(en.errno), 'namespaces');
}

/**
 * Creates the container's process and runs the plan up to the exec (or up to OCI
 * `create`'s wait). On any failure the child is killed and reaped, the cleanup steps run,
 * and the error names the operation and errno.
 */
export async function startContainer(o: StartOptions): Promise<Started> {
  const kernel = o.kernel ?? nativeKernel;
  const { plan } = o;
  let pid = 0;
  let syncFd = -1;
  let ptyFd: number | undefined;
  let devNull = -1;
  const created = new Set<string>();
  let pipes: ReturnType<typeof makePipes> | undefined;
  let ours: StdioPipes | undefined;
  try {
    for (const s of parentSteps(plan, 'prepare')) execParentStep(s, undefined, { created });
    const flags = plan.cloneFlags.reduce((acc, f) => acc | CLONE[f.replace(/^CLONE_/, '') as CloneFlag], 0);
    devNull = openSync('/dev/null', 'r');
    const terminal = Boolean(plan.spec.process.terminal);
    let stdio: [number, number, number];
    if (o.stdio === 'pass') stdio = [o.interactive && !terminal ? 0 : devNull, 1, 2];
    // a terminal: the init's CONSOLE step puts the pty on 0-2; until then it holds nothing of ours
    else if (terminal) stdio = [devNull, devNull, devNull];
    else {
      pipes = makePipes(kernel, o.interactive, devNull);
      stdio = pipes.child;
    }
    const spawn = o.spawner ?? spawnHere;
    const encoded = encodePlan(childSteps(plan));
    const into = parentSteps(plan, 'after-clone').find((s) => s.action === 'cgroup' && s.verb === 'clone-into');
    const cgroupDir = into?.action === 'cgroup' ? into.path : undefined;
    let bornInCgroup = cgroupDir !== undefined;
    try {
      try {
        ({ pid, syncFd } = spawn(kernel, encoded, flags, stdio, cgroupDir, o.preserveFds));
      } catch (e) {
        // no clone3 (Linux < 5.7, or a seccomp filter around tsrun): clone, then cgroup.procs
        if (!bornInCgroup || (e as { errno?: number }).errno !== ENOSYS) throw e;
        bornInCgroup = false;
        ({ pid, syncFd } = spawn(kernel, encoded, flags, stdio, undefined, o.preserveFds));
      }
    } catch (e) {
      throw spawnError(e, kernel);
    }
    closeSync(devNull);
    devNull = -1;
    // the child has its copies: ours must go, or the container's stdout never reaches EOF
    ours = pipes?.ours;
    pipes?.close();
    pipes = undefined;
    o.onSpawn?.(pid, [...created]);
    for (const s of parentSteps(plan, 'after-clone')) execParentStep(s, pid, { bornInCgroup });
    // The child waits before exec for its maps (native/spawn.h): release it first.
    if (plan.cloneFlags.includes('CLONE_NEWUSER')) kernel.syncSend(syncFd, MSG.ID_MAPPED);
    kernel.syncSend(syncFd, MSG.GO);
    // Detached idmapped mounts for OP_MOUNT_FD: made now that the child's user namespace
    // exists and its maps are written, sent after GO because init reads GO first. A send
    // that fails means the child died: its MSG_ERROR, read below, says why.
    for (const s of parentSteps(plan, 'after-clone')) {
      if (s.action !== 'send-mount-fd') continue;
      const fd = kernel.idmapTree(s.source, pid, s.recursive);
      try {
        kernel.syncSend(syncFd, MSG.MOUNT_FD, fd);
      } catch {
        break;
      } finally {
        kernel.close(fd);
      }
    }
    for (;;) {
      const m = kernel.syncRecv(syncFd);
      if (m === null) {
        // EOF: the socket is close-on-exec in the init, so the command is running
        kernel.close(syncFd);
        syncFd = -1;
        runPlanHooks(plan, 'poststart', o.bundle, pid);
        return { pid, ptyFd, state: 'running', syncFd: -1, interactive: o.interactive, cgroupsCreated: [...created], ...(ours ? { pipes: ours } : {}), ...(o.bundle ? { bundle: o.bundle } : {}) };
      }
      if (m.type === MSG.PID) {
        // exec (OP_FORK): the init forked the command into the container's PID namespace
        // and exits; reaped here, it has handed its child to us (a subreaper) or to the
        // engine's. From now on `pid` is the command.
        const forker = pid;
        pid = m.index;
        const st = await kernel.waitPid(forker);
        if (st.code !== 0) throw new TsrunError(`tsrun-init exited ${st.code ?? `on signal ${st.signal}`} after forking into the container`);
        continue;
      }
      if (m.type === MSG.PTY && m.fd !== undefined) {
        ptyFd = m.fd;
        o.onPty?.(m.fd);
      }
      else if (m.type === MSG.READY) return { pid, ptyFd, state: 'created', syncFd, interactive: o.interactive, cgroupsCreated: [...created], ...(ours ? { pipes: ours } : {}), ...(o.bundle ? { bundle: o.bundle } : {}) };
      else if (m.type === MSG.HOOKS) {
        // the init waits before pivot_root (OP_HOOK_SYNC): prestart and createRuntime hooks now
        runCreateHooks(plan, o.bundle, pid);
        kernel.syncSend(syncFd, MSG.HOOKS_DONE);
      }
      else if (m.type === MSG.ERROR) throw childError(plan, m.index, m.err, kernel);
      else throw new TsrunError(`unexpected message ${m.type} from tsrun-init`);
    }
  } catch (e) {
    if (devNull >= 0) closeSync(devNull);
    if (pipes) {
      pipes.close();
      ours = pipes.ours;
    }
    if (ours) closePipes(ours, kernel);
    if (pid > 0) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* already gone */
      }
      await kernel.waitPid(pid).catch(() => undefined);
    }
    if (syncFd >= 0) kernel.close(syncFd);
    if (ptyFd !== undefined) kernel.close(ptyFd);
    cleanup(plan, undefined, created);
    // runtime.md: a failed create (hooks included) goes on to destroy, then the poststop hooks
    if (pid > 0) runPlanHooks(plan, 'poststop', o.bundle, pid);
    throw e;
  }
}

const FORWARDED: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT', 'SIGUSR1', 'SIGUSR2'];

/** Exit status as docker reports it: the code, or 128 + the signal number. */
export function exitCode(s: { code?: number; signal?: number }): number {
  return s.code ?? 128 + (s.signal ?? 0);
}

/**
 * Forwards tsrun's signals to the container's PID 1. Installed before the clone, so a
 * signal that arrives while the container starts is held and delivered once its pid is
 * known, instead of killing tsrun and orphaning the container.
 */
export function forwardSignals(): { setPid(pid: number): void; dispose(): void } {
  let pid = 0;
  const pending: NodeJS.Signals[] = [];
  const send = (sig: NodeJS.Signals) => {
    try {
      process.kill(pid, sig);
    } catch {
      /* exited meanwhile */
    }
  };
  const handler = (sig: NodeJS.Signals) => (pid ? send(sig) : pending.push(sig));
  for (const s of FORWARDED) process.on(s, handler);
  return {
    setPid(p) {
      pid = p;
      for (const sig of pending.splice(0)) send(sig);
    },
    dispose() {
      for (const s of FORWARDED) process.off(s, handler);
    },
  };
}

/**
 * Foreground run: relay the terminal or the stdio pipes, forward signals to the container's PID 1,
 * wait for it, clean up. Returns docker's exit code.
 */
export async function attachAndWait(plan: Plan, started: Started, kernel: Kernel = nativeKernel, keep = false, signals = forwardSignals()): Promise<number> {
  signals.setPid(started.pid);
  const relay = started.ptyFd !== undefined ? relayPty(started.ptyFd, started.interactive, kernel) : started.pipes ? relayPipes(started.pipes) : undefined;
  try {
    const status = await kernel.waitPid(started.pid);
    await relay?.done();
    return exitCode(status);
  } finally {
    signals.dispose();
    relay?.stop();
    // a kept container (docker run without --rm) keeps its layer and cgroup until `tsrun rm`;
    // its reports (why it died: the OOM killer) are still due now, and its network address
    // goes back to the pool (as docker's stop), `rm` repeats that harmlessly
    const err = keep ? cleanup(plan, dueAtExit) : cleanup(plan, undefined, started.cgroupsCreated);
    if (err) writeSync(2, `tsrun: warning: cleanup: ${err.message}\n`);
    // a kept container's poststop hooks run when `rm` deletes it
    if (!keep) runPlanHooks(plan, 'poststop', started.bundle, started.pid);
  }
}

function writeAll(fd: number, buf: Buffer): void {
  let off = 0;
  while (off < buf.length) {
    try {
      off += writeSync(fd, buf, off);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'EAGAIN') continue;
      throw e;
    }
  }
}

/** Copies between the user's terminal and the container's pty master; raw mode while it runs. */
function relayPty(master: number, interactive: boolean, kernel: Kernel): { done(): Promise<void>; stop(): void } {
  // docker -t without -i: a terminal for output only, tsrun's stdin is not read
  const stdinTty = interactive && tty().isatty(0);
  const out = createReadStream('', { fd: master, autoClose: false, highWaterMark: 65536 });
  const ended = new Promise<void>((resolve) => {
    out.on('data', (c) => writeAll(1, c as Buffer));
    // the master reads EIO once the last slave fd in the container is closed (pty(7))
    out.on('error', () => resolve());
    out.on('end', () => resolve());
    out.on('close', () => resolve());
  });
  const input = (c: Buffer) => {
    try {
      writeAll(master, c);
    } catch {
      /* container gone */
    }
  };
  const resize = () => {
    if (process.stdout.isTTY) {
      try {
        kernel.setWinsize(master, process.stdout.rows, process.stdout.columns);
      } catch {
        /* container gone */
      }
    }
  };
  if (stdinTty) process.stdin.setRawMode(true);
  if (interactive) process.stdin.on('data', input);
  process.on('SIGWINCH', resize);
  resize();
  let stopped = false;
  return {
    async done() {
      await Promise.race([ended, new Promise((r) => setTimeout(r, 2000).unref())]);
    },
    stop() {
      if (stopped) return;
      stopped = true;
      process.off('SIGWINCH', resize);
      if (interactive) {
        process.stdin.off('data', input);
        if (stdinTty) process.stdin.setRawMode(false);
        process.stdin.pause();
      }
      // destroy() closes the master itself (autoClose only governs the end of the data), and
      // only once any read in flight on the threadpool is done: a close of our own as well
      // closed the number a second time, by then often another file's, the container's lock
      out.destroy();
    },
  };
}
