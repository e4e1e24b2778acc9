import { writeFileSync } from 'node:fs';
import { StateError } from '../errors.js';
import { INIT_PATH, nativeKernel } from '../kernel/native.js';
import type { Kernel } from '../kernel/types.js';
import { buildPlan } from '../plan/build.js';
import * as op from '../plan/ops.js';
import type { CloneFlag } from '../plan/ops.js';
import { child } from '../plan/step.js';
import type { ChildStep, Plan, Step } from '../plan/types.js';
import type { OpName } from '../plan/protocol.js';
import type { NamespaceType, Process, Spec } from '../spec/types.js';
import { detectHost } from './host.js';
import { resolve } from './lifecycle.js';
import type { Paths } from './paths.js';
import { attachAndWait, startContainer, type Spawner } from './run.js';
import { isAlive, statusOf } from './state.js';

// exec: a new process in a running container. It must be born into the container's PID
// namespace (the addon clones it there), join every other namespace (setns in the
// single-threaded init, design.md trap 4) and then get exactly what the container's own
// process got: user, capabilities, no_new_privs, rlimits, seccomp. Those steps are taken
// from the container's plan itself, so exec can never be more privileged than `run` was.

/** The container-plan operations an exec repeats; mounts, pivot and hostname are the container's already. */
const EXEC_OPS = new Set<OpName>(['SETSID', 'CONSOLE', 'SETRLIMIT', 'OOM_SCORE_ADJ', 'KEEPCAPS', 'CAPBSET', 'SETGROUPS', 'SETRESGID', 'SETRESUID', 'CAPSET', 'NO_NEW_PRIVS', 'SECCOMP', 'CHDIR', 'EXEC']);

/** setns order: the user namespace first (it grants the capabilities to enter the others), the mount namespace last (it changes the root). */
const SETNS_ORDER: [NamespaceType, string, CloneFlag][] = [
  ['user', 'user', 'NEWUSER'],
  ['cgroup', 'cgroup', 'NEWCGROUP'],
  ['ipc', 'ipc', 'NEWIPC'],
  ['uts', 'uts', 'NEWUTS'],
  ['network', 'net', 'NEWNET'],
  ['mount', 'mnt', 'NEWNS'],
];

export function execProcess(base: Process, over: Partial<Process> & { args: string[] }): Process {
  const env = new Map<string, string>();
  for (const e of [...(base.env ?? []), ...(over.env ?? [])]) env.set(e.slice(0, e.indexOf('=')), e);
  return { ...base, ...over, env: [...env.values()], user: over.user ?? base.user, cwd: over.cwd ?? base.cwd, terminal: Boolean(over.terminal) };
}

/** Pure: the container's spec and plan → the plan of an exec into it. */
export function execPlan(id: string, containerSpec: Spec, initPid: number, proc: Process, containerDir: string): Plan {
  const spec: Spec = { ...containerSpec, process: proc };
  const full = buildPlan({ id, spec, rootfs: '/', containerDir, host: detectHost(), terminal: Boolean(proc.terminal), waitStart: false });
  const joined: Step[] = SETNS_ORDER.filter(([type]) => spec.linux.namespaces.some((n) => n.type === type)).map(([, file, flag]) =>
    child('early', 'namespaces', `join the container's ${file} namespace`, op.setns(`/proc/${initPid}/ns/${file}`, flag)),
  );
  const steps: Step[] = [
    ...full.steps.filter((s) => s.where === 'parent' && s.phase === 'after-clone' && (s.action === 'clone' || (s.action === 'cgroup' && (s.verb === 'join' || s.verb === 'clone-into')))),
    // the container's cgroups, by the same means its init used (host paths: before any setns)
    ...full.steps.filter((s) => s.where === 'child' && s.phase === 'join'),
    ...joined,
    ...full.steps
      .filter((s): s is ChildStep => s.where === 'child' && EXEC_OPS.has(s.op))
      .map((s) => (s.op === 'CONSOLE' ? { ...s, ...op.consoleOp(proc.consoleSize?.height ?? 0, proc.consoleSize?.width ?? 0, false) } : s)),
  ];
  return { id, spec, cloneFlags: [], steps };
}

export interface ExecOptions {
  paths: Paths;
  ref: string;
  process: Partial<Process> & { args: string[] };
  interactive: boolean;
  detach: boolean;
  pidFile?: string;
  consoleSocket?: string;
  kernel?: Kernel;
}

export async function execInContainer(o: ExecOptions): Promise<number> {
  const kernel = o.kernel ?? nativeKernel;
  const s = resolve(o.paths, o.ref);
  const status = statusOf(s);
  if (status !== 'running') throw new StateError(`container ${s.name ?? s.id.slice(0, 12)} is ${status}: exec needs a running container`);
  const proc = execProcess(s.config.process, o.process);
  const plan = execPlan(s.id, s.config, s.pid, proc, s.containerDir);
  const pidns = `/proc/${s.pid}/ns/pid`;
  const spawner: Spawner = (k, encoded, _flags, stdio, cgroupDir) => k.spawn({ initPath: INIT_PATH, plan: encoded, cloneFlags: 0, stdio, pidns, ...(cgroupDir ? { cgroupDir } : {}) });
  // foreground: pipes tsrun relays; --detach (engines): their own pipes, passed (docs/stdio.md)
  const started = await startContainer({ plan, interactive: o.interactive, kernel, spawner, stdio: o.detach ? 'pass' : 'relay' });
  if (!isAlive(s)) throw new StateError(`container ${s.id.slice(0, 12)} stopped during exec`);
  if (o.pidFile) writeFileSync(o.pidFile, String(started.pid));
  if (o.detach) {
    if (o.consoleSocket && started.ptyFd !== undefined) kernel.sendConsole(o.consoleSocket, started.ptyFd);
    if (started.ptyFd !== undefined) kernel.close(started.ptyFd);
    return 0;
  }
  return attachAndWait(plan, started, kernel, true);
}
