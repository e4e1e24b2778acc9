import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { StateError } from '../errors.js';
import { nativeKernel } from '../kernel/native.js';
import type { Kernel } from '../kernel/types.js';
import { buildPlan } from '../plan/build.js';
import * as op from '../plan/ops.js';
import type { CloneFlag } from '../plan/ops.js';
import { child, parent } from '../plan/step.js';
import type { ChildStep, Plan, Step } from '../plan/types.js';
import type { OpName } from '../plan/protocol.js';
import type { NamespaceType, Process, Spec } from '../spec/types.js';
import { detectHost } from './host.js';
import { resolve } from './lifecycle.js';
import type { Paths } from './paths.js';
import { attachAndWait, startContainer } from './run.js';
import { isAlive, statusOf } from './state.js';

// exec: a new process in a running container. No process running a host binary may enter
// any namespace or cgroup of the container (CVE-2019-5736; design.md rule 1): a container
// given CAP_SYS_PTRACE could open /proc/<pid>/exe of a copy of node born in its PID
// namespace and rewrite node once tsrun exits. So the addon spawns with no namespace flag
// and no cgroup, the child execs the sealed tsrun-init at once, and the init joins: the
// container's cgroups (host paths, so first), then each namespace by setns (single-threaded:
// design.md trap 4), then forks (OP_FORK) so the command is born in the container's PID
// namespace. The init is non-dumpable from its first instruction, before any join.
//
// What the process may do: `tsrun exec CMD` (docker exec) takes user, capabilities,
// no_new_privs, rlimits, seccomp and the rest from the container's own process, changing
// only what -u/-e/-w/-t ask, so it never gets more than the container's command has.
// `tsrun exec --process FILE` (the OCI runtime CLI engines call) runs the process the
// engine wrote, as runc does: its user, capabilities and no_new_privs are taken as given,
// which may be more than the container's (docker exec --privileged, a uid 0 exec into a
// -u 1000 container). The engine decides; `tsrun exec --explain` shows the difference.

/** The container-plan operations an exec repeats; mounts, pivot and hostname are the container's already. */
const EXEC_OPS = new Set<OpName>(['SETSID', 'JOIN_KEYRING', 'CONSOLE', 'SETRLIMIT', 'OOM_SCORE_ADJ', 'KEEPCAPS', 'CAPBSET', 'SETGROUPS', 'SETRESGID', 'SETRESUID', 'CAPSET', 'LSM_EXEC', 'NO_NEW_PRIVS', 'LANDLOCK', 'SECCOMP', 'CHDIR', 'EXEC']);

/**
 * setns order: the user namespace first (it grants the capabilities to enter the others),
 * pid before the fork that makes it apply, the mount namespace last (it changes the root).
 */
const SETNS_ORDER: [NamespaceType, string, CloneFlag][] = [
  ['user', 'user', 'NEWUSER'],
  ['cgroup', 'cgroup', 'NEWCGROUP'],
  ['ipc', 'ipc', 'NEWIPC'],
  ['uts', 'uts', 'NEWUTS'],
  ['network', 'net', 'NEWNET'],
  ['pid', 'pid', 'NEWPID'],
  ['mount', 'mnt', 'NEWNS'],
];

export function execProcess(base: Process, over: Partial<Process> & { args: string[] }): Process {
  const env = new Map<string, string>();
  for (const e of [...(base.env ?? []), ...(over.env ?? [])]) env.set(e.slice(0, e.indexOf('=')), e);
  return { ...base, ...over, env: [...env.values()], user: over.user ?? base.user, cwd: over.cwd ?? base.cwd, terminal: Boolean(over.terminal) };
}

/**
 * The container's cgroups, joined by the init itself while it is still in the host's
 * namespaces: each directory the container's own init was placed in (born there through
 * clone3, moved by tsrun, or moved itself). Writing 0 moves the writer (cgroup(7),
 * cgroups(7) "tasks"/"cgroup.procs").
 */
function cgroupJoins(full: Plan): ChildStep[] {
  const out: ChildStep[] = [];
  for (const s of full.steps) {
    if (s.where === 'child' && s.phase === 'join') out.push(s);
    else if (s.where === 'parent' && s.action === 'cgroup' && (s.verb === 'clone-into' || s.verb === 'join')) {
      out.push(child('join', 'cgroups', 'the exec joins the container\'s cgroup itself, from the host\'s namespaces (the path is a host path): tsrun never puts its own copy of node there', op.writeFile(join(s.path, 'cgroup.procs'), '0')));
    }
  }
  return out;
}

/** Pure: the container's spec and plan → the plan of an exec into it. */
export function execPlan(id: string, containerSpec: Spec, initPid: number, proc: Process, containerDir: string, stateRoot?: string): Plan {
  const spec: Spec = { ...containerSpec, process: proc };
  const full = buildPlan({ id, spec, rootfs: '/', containerDir, host: detectHost(), terminal: Boolean(proc.terminal), waitStart: false, ...(stateRoot !== undefined ? { stateRoot } : {}) });
  const joined: Step[] = SETNS_ORDER.filter(([type]) => spec.linux.namespaces.some((n) => n.type === type)).map(([, file, flag]) =>
    child('early', 'namespaces', file === 'pid' ? 'the container\'s pid namespace, for the children of this process only (pid_namespaces(7)): see the fork' : `join the container's ${file} namespace`, op.setns(`/proc/${initPid}/ns/${file}`, flag)),
  );
  const steps: Step[] = [
    parent(
      'after-clone',
      'namespaces',
      'no namespace flag and no cgroup: the copy of node that clones stays in the host\'s namespaces and cgroups until it has become tsrun-init (CVE-2019-5736)',
      { action: 'clone', flags: [] },
      `clone3(${process.arch === 'x64' ? 'CLONE_VM|CLONE_VFORK, ' : ''}exit_signal=SIGCHLD) → execveat(sealed memfd "tsrun-init") with the plan on fd 4`,
    ),
    ...cgroupJoins(full),
    ...joined,
    child('early', 'namespaces', 'setns(CLONE_NEWPID) applies to children only: the command is born in the container\'s PID namespace; this process reports its pid and exits', op.fork()),
    ...full.steps
      .filter((s): s is ChildStep => s.where === 'child' && EXEC_OPS.has(s.op))
      .map((s) => (s.op === 'CONSOLE' ? { ...s, ...op.consoleOp(proc.consoleSize?.height ?? 0, proc.consoleSize?.width ?? 0, false) } : s)),
  ];
  return { id, spec, cloneFlags: [], steps };
}

const CAP_SETS = ['bounding', 'permitted', 'effective', 'inheritable', 'ambient'] as const;

/**
 * Pure: where an exec's process is more privileged than the container's own process, one
 * sentence each (empty: it is not). An OCI `--process` file is taken as given (runc does
 * the same; the engine decides), so this is what `exec --explain` shows a learner.
 */
export function privilegeDiff(container: Process, exec: Process): string[] {
  const out: string[] = [];
  if (exec.user.uid !== container.user.uid) out.push(`the exec process runs as uid ${exec.user.uid} while the container's process runs as uid ${container.user.uid}`);
  if (exec.user.gid !== container.user.gid) out.push(`the exec process runs as gid ${exec.user.gid} while the container's process runs as gid ${container.user.gid}`);
  const extraGids = (exec.user.additionalGids ?? []).filter((g) => !(container.user.additionalGids ?? []).includes(g));
  if (extraGids.length) out.push(`supplementary groups the container's process does not have: ${extraGids.join(', ')}`);
  for (const set of CAP_SETS) {
    const have = new Set(container.capabilities?.[set] ?? []);
    const added = (exec.capabilities?.[set] ?? []).filter((c) => !have.has(c));
    if (added.length) out.push(`capabilities added to the ${set} set: ${added.join(', ')}`);
  }
  if (container.noNewPrivileges && !exec.noNewPrivileges) out.push('no_new_privs is off while the container\'s process has it on: setuid binaries and file capabilities raise privileges again');
  for (const r of exec.rlimits ?? []) {
    const c = container.rlimits?.find((x) => x.type === r.type);
    if (c && (r.hard > c.hard || r.soft > c.soft)) out.push(`${r.type} is ${r.soft}:${r.hard} while the container's process has ${c.soft}:${c.hard}`);
  }
  if (exec.oomScoreAdj !== undefined && exec.oomScoreAdj < (container.oomScoreAdj ?? 0)) out.push(`oom_score_adj ${exec.oomScoreAdj} is below the container's ${container.oomScoreAdj ?? 0}`);
  if (exec.apparmorProfile !== container.apparmorProfile) out.push(`AppArmor profile ${JSON.stringify(exec.apparmorProfile ?? 'unconfined')} instead of the container's ${JSON.stringify(container.apparmorProfile ?? 'unconfined')}`);
  if (exec.selinuxLabel !== container.selinuxLabel) out.push(`SELinux label ${JSON.stringify(exec.selinuxLabel ?? '')} instead of the container's ${JSON.stringify(container.selinuxLabel ?? '')}`);
  return out;
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
  /** --preserve-fds N */
  preserveFds?: number;
}

/** The plan of an exec into a running container, and what the container's own process is. */
export function planExec(paths: Paths, ref: string, process: Partial<Process> & { args: string[] }): { plan: Plan; container: Process; state: ReturnType<typeof resolve> } {
  const s = resolve(paths, ref);
  // `creating` counts as not running: its init has not reached its command yet
  const status = statusOf(s, paths);
  if (status !== 'running') throw new StateError(`container ${s.name ?? s.id.slice(0, 12)} is ${status}: exec needs a running container`);
  const proc = execProcess(s.config.process, process);
  return { plan: execPlan(s.id, s.config, s.pid, proc, s.containerDir, paths.root), container: s.config.process, state: s };
}

export async function execInContainer(o: ExecOptions): Promise<number> {
  const kernel = o.kernel ?? nativeKernel;
  const { plan, state: s } = planExec(o.paths, o.ref, o.process);
  // the command is the init's grandchild (OP_FORK): as its subreaper, tsrun gets it as a
  // child when the intermediate exits, and can wait for it (runc does the same)
  if (!o.detach) kernel.setChildSubreaper();
  // foreground: pipes tsrun relays; --detach (engines): their own pipes, passed (docs/stdio.md)
  const started = await startContainer({ plan, interactive: o.interactive, kernel, stdio: o.detach ? 'pass' : 'relay', ...(o.preserveFds ? { preserveFds: o.preserveFds } : {}) });
  if (!isAlive(s)) throw new StateError(`container ${s.id.slice(0, 12)} stopped during exec`);
  if (o.pidFile) writeFileSync(o.pidFile, String(started.pid));
  if (o.detach) {
    if (o.consoleSocket && started.ptyFd !== undefined) kernel.sendConsole(o.consoleSocket, started.ptyFd);
    if (started.ptyFd !== undefined) kernel.close(started.ptyFd);
    return 0;
  }
  return attachAndWait(plan, started, kernel, true);
}
