// The runtime side of the cgroups control: where the container's cgroup lives, the parent
// steps that create / fill / join / empty / remove it, and the executor for those steps.
// Everything goes through plain file operations on cgroupfs (cgroups(7)), so the same code
// runs against a fixture tree in a temp dir (unit tests) and the real hierarchy.
import { createHash } from 'node:crypto';
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, realpathSync, rmdirSync, writeSync, constants } from 'node:fs';
import { dirname, isAbsolute, join, posix, resolve } from 'node:path';
import { KernelError, SpecError, UnsupportedError } from '../../errors.js';
import * as op from '../../plan/ops.js';
import { child } from '../../plan/step.js';
import type { ChildStep, ParentAction, ParentPhase, ParentStep } from '../../plan/types.js';
import type { Spec } from '../../spec/types.js';
import { CGROUP_PARENT_ANNOTATION } from './flags.js';
import { hostLayout, parseProcCgroup, procCgroupPathFor, type CgroupLayout, type Hierarchy } from './mode.js';
import { mapResources, type CgroupWrite, type FileProbe, rootProbe } from './resources.js';

export const DEFAULT_PARENT = '/tsrun';
const CONTROL = 'cgroups';

/**
 * tsrun's own parent cgroup for the containers of one state root: /tsrun/<12 hex digits of
 * sha256(the root's real path)>. Container ids are unique only within a root, so a parent
 * shared by every root would give the same id under two roots one cgroup, and deleting one
 * would kill the other. Without a root (library callers, unit tests) it is /tsrun.
 */
export function defaultCgroupParent(stateRoot?: string): string {
  if (stateRoot === undefined) return DEFAULT_PARENT;
  // the real path of the nearest existing ancestor, plus the rest: the same tag before the
  // root is made (a first run, --dry-run) and after, also through a symlink (/var/run -> /run)
  let real = resolve(stateRoot);
  for (let dir = real, rest = ''; ; rest = posix.join(posix.basename(dir), rest), dir = dirname(dir)) {
    try {
      real = posix.join(realpathSync(dir), rest);
      break;
    } catch {
      if (dir === dirname(dir)) break;
    }
  }
  real = real.replace(/\/+$/, '') || '/';
  return `${DEFAULT_PARENT}/${createHash('sha256').update(real).digest('hex').slice(0, 12)}`;
}

/** The container's cgroup path inside every hierarchy (OCI linux.cgroupsPath semantics). */
export function resolveCgroupPath(spec: Spec, id: string, defaultParent: string = DEFAULT_PARENT): string {
  const explicit = spec.linux.cgroupsPath;
  const parent = spec.annotations?.[CGROUP_PARENT_ANNOTATION];
  const path = explicit ?? posix.join(parent ?? defaultParent, id);
  const field = explicit !== undefined ? 'linux.cgroupsPath' : '--cgroup-parent';
  // "slice:prefix:name" is the systemd driver's form (runc --systemd-cgroup); tsrun has no
  // systemd driver and would otherwise create a directory with colons in its name.
  if (/^[^/]*:[^/]*:/.test(path)) throw new UnsupportedError(`${field}: "${path}" is a systemd cgroup spec; tsrun drives cgroupfs, give a path`);
  if (path.split('/').includes('..')) throw new SpecError(field, `"${path}" leaves the cgroup hierarchy ("..")`);
  if (/[\0\n]/.test(path)) throw new SpecError(field, 'must not contain NUL or newline');
  const norm = posix.normalize(path).replace(/\/+$/, '');
  if (norm === '' || norm === '/' || norm === '.') throw new SpecError(field, `"${path}" would be the hierarchy's root`);
  return norm;
}

/** One directory of the container's cgroup, in one hierarchy. */
export interface CgroupTarget {
  hierarchy: Hierarchy;
  dir: string;
}

/**
 * The directories the container gets: one in each v1 hierarchy that has controllers (runc
 * joins them all, so no controller is left pointing at the caller's cgroup) plus the cgroup2
 * one. Relative paths are relative to tsrun's own cgroup in each hierarchy (OCI: "relative to
 * the runtime's cgroup"), read from /proc/self/cgroup.
 */
export function cgroupTargets(layout: CgroupLayout, cgroupPath: string, procSelfCgroup?: string): CgroupTarget[] {
  const hierarchies = [...layout.v1.filter((h) => h.controllers.length > 0), ...(layout.unified ? [layout.unified] : [])];
  const lines = isAbsolute(cgroupPath) ? [] : parseProcCgroup(procSelfCgroup ?? readFileSync('/proc/self/cgroup', 'utf8'));
  return hierarchies.map((h) => {
    const base = isAbsolute(cgroupPath) ? '/' : procCgroupPathFor(h, lines) ?? '/';
    return { hierarchy: h, dir: join(h.mountPoint, base, cgroupPath) };
  });
}

/** Controllers tsrun enables below the cgroup2 root so their files appear in the container's cgroup. */
const V2_ENABLE = ['cpuset', 'cpu', 'io', 'memory', 'pids', 'hugetlb'];

/** Which hierarchy receives a write for `controller` ('unified' = core cgroup.* files of cgroup2). */
function hierarchyFor(layout: CgroupLayout, controller: string): Hierarchy {
  const h = controller === 'unified' ? layout.unified : layout.controllers[controller];
  if (!h) throw new UnsupportedError(`the ${controller} cgroup controller is not available (cgroup mode ${layout.mode})`);
  return h;
}

export interface CgroupPlan {
  cgroupPath: string;
  targets: CgroupTarget[];
  writes: CgroupWrite[];
  warnings: string[];
  steps: ParentStep[];
  /** the init's own moves into its v1 cgroups (phase 'join') */
  childSteps: ChildStep[];
}

function step(phase: ParentPhase, a: Omit<Extract<ParentAction, { action: 'cgroup' }>, 'action'>, text: string, why: string): ParentStep {
  return { where: 'parent', phase, action: 'cgroup', ...a, text, why, control: CONTROL } as ParentStep;
}

export interface PlanOptions {
  probe?: FileProbe;
  procSelfCgroup?: string;
  /** where a container without linux.cgroupsPath or --cgroup-parent goes (defaultCgroupParent) */
  defaultParent?: string;
}

/**
 * Builds the steps for a container: prepare (mkdir, enable controllers, write limits), the
 * join, cleanup (empty the cgroup, rmdir).
 *
 * Cleanup acts only on what tsrun created (trust-boundary rule 5): `create` records each
 * directory its mkdir(2) made (ExecContext.created, kept in the container's state), and `kill`
 * and `remove` skip a directory not in that record. A linux.cgroupsPath naming an existing
 * cgroup is joined, as the OCI spec allows, but whatever was in it before stays: tsrun neither
 * empties nor removes it (the container's own processes die with its init, pid_namespaces(7)).
 *
 * The join avoids cgroup.procs where it can. Writing a pid to cgroup.procs takes the
 * kernel's global cgroup_threadgroup_rwsem for writing, and the first writer after a quiet
 * spell waits for an RCU grace period: ~10 ms of every `tsrun run` here (runc pays it too).
 * Two ways skip that lock (kernel/cgroup/cgroup.c, cgroup_procs_write_start and
 * cgroup_css_set_fork):
 *  - cgroup2: the init is born in its cgroup, clone3(CLONE_INTO_CGROUP) (Linux 5.7);
 *  - cgroup v1: the init, single-threaded, writes 0 (itself) to each hierarchy's `tasks`
 *    file before anything else (phase 'join'): moving only the calling thread needs no
 *    group-wide lock. In a user namespace the init no longer has the host rights to those
 *    files, so there tsrun writes the pid to cgroup.procs, before GO, as runc does.
 * Either way nothing the init runs after its first operation escapes the limits.
 */
export function planCgroup(spec: Spec, id: string, layout: CgroupLayout, opts: PlanOptions = {}): CgroupPlan {
  const defaultParent = opts.defaultParent ?? DEFAULT_PARENT;
  const cgroupPath = resolveCgroupPath(spec, id, defaultParent);
  const mapping = mapResources(spec.linux.resources, layout, opts.probe ?? rootProbe);
  const targets = cgroupTargets(layout, cgroupPath, opts.procSelfCgroup);
  const steps: ParentStep[] = [];
  for (const t of targets) {
    const inherit = t.hierarchy.version === 1 && t.hierarchy.controllers.includes('cpuset') ? ['cpuset.cpus', 'cpuset.mems'] : undefined;
    steps.push(
      step(
        'prepare',
        { verb: 'create', path: t.dir, ...(inherit ? { inherit } : {}) },
        `mkdir -p ${t.dir}${inherit ? '  # and copy cpuset.cpus, cpuset.mems from the parent into each new level' : ''}`,
        inherit
          ? 'own cgroup per container; a new v1 cpuset starts with no CPUs/mems and refuses tasks until filled (cpuset(7))'
          : `own cgroup per container (${t.hierarchy.version === 2 ? 'cgroup2' : t.hierarchy.controllers.join(',')})`,
      ),
    );
    if (t.hierarchy.version === 2) {
      // pure v2: delegate the usual controllers (their files also feed `tsrun stats`);
      // hybrid: only what a limit needs there, leaving the host's cgroup2 root as it was
      const wanted = layout.mode === 'v2' ? V2_ENABLE : mapping.controllers;
      const enable = wanted.filter((c) => t.hierarchy.controllers.includes(c));
      if (enable.length) {
        // every level from the hierarchy root down to the container's parent must delegate
        // the controllers to its children (cgroup-v2.rst "Enabling and Disabling")
        const levels: string[] = [];
        for (let d = dirname(t.dir); d.length >= t.hierarchy.mountPoint.length; d = dirname(d)) {
          levels.unshift(d);
          if (d === t.hierarchy.mountPoint || d === '/') break;
        }
        const value = enable.map((c) => `+${c}`).join(' ');
        for (const d of levels) {
          steps.push(step('prepare', { verb: 'enable', path: d, file: 'cgroup.subtree_control', value }, `echo "${value}" > ${d}/cgroup.subtree_control`, 'cgroup2 controllers reach a cgroup only if every ancestor enables them'));
        }
      }
    }
  }
  for (const w of mapping.writes) {
    const h = hierarchyFor(layout, w.controller);
    const t = targets.find((x) => x.hierarchy === h);
    if (!t) throw new UnsupportedError(`${w.field}: no cgroup directory for the ${w.controller} controller`);
    steps.push(step('prepare', { verb: 'set', path: t.dir, file: w.file, value: w.value }, `echo "${w.value}" > ${t.dir}/${w.file}`, `${w.field} (${h.version === 2 ? 'cgroup v2' : 'cgroup v1'})`));
  }
  const childSteps: ChildStep[] = [];
  const userns = spec.linux.namespaces.some((n) => n.type === 'user');
  for (const t of targets) {
    if (t.hierarchy.version === 2) {
      steps.push(
        step(
          'after-clone',
          { verb: 'clone-into', path: t.dir },
          `clone3(CLONE_INTO_CGROUP, open("${t.dir}", O_PATH))  # the init is born in its cgroup`,
          'born in its cgroup2 cgroup: no later move through cgroup.procs and its global lock (clone(2), Linux 5.7)',
        ),
      );
    } else if (userns) {
      steps.push(step('after-clone', { verb: 'join', path: t.dir, file: 'cgroup.procs' }, `echo $PID > ${t.dir}/cgroup.procs`, 'the init joins before it is told GO, so nothing it runs escapes the limits'));
    } else {
      childSteps.push(child('join', CONTROL, 'the init moves itself (0 = the writing thread; it has only one) before anything else: no global lock, unlike cgroup.procs', op.writeFile(join(t.dir, 'tasks'), '0')));
    }
  }
  const memTarget = targets.find((t) => t.hierarchy.controllers.includes('memory'));
  if (memTarget) {
    const file = memTarget.hierarchy.version === 2 ? 'memory.events' : 'memory.oom_control';
    steps.push(
      step('cleanup', { verb: 'oom-check', path: memTarget.dir, file }, `grep oom_kill ${memTarget.dir}/${file}  # report an OOM kill`, 'say why the container died when the memory limit\'s OOM killer ended it (docker: OOMKilled)'),
    );
  }
  const killTarget = killTargetOf(targets);
  if (killTarget) {
    const v2 = killTarget.hierarchy.version === 2;
    steps.push(
      step(
        'cleanup',
        { verb: 'kill', path: killTarget.dir },
        `${v2 ? `echo 1 > ${killTarget.dir}/cgroup.kill  # until cgroup.events says populated 0` : `echo FROZEN > ${killTarget.dir}/freezer.state; kill -9 $(cat cgroup.procs); echo THAWED > freezer.state  # until cgroup.procs is empty`}; only if tsrun created it`,
        v2 ? 'cgroup.kill SIGKILLs every process at once, so a fork bomb cannot outrun the cleanup (Linux 5.14)' : 'a frozen cgroup cannot fork, so the kill loop catches every process of a fork bomb',
      ),
    );
  }
  for (const t of targets) {
    steps.push(step('cleanup', { verb: 'remove', path: t.dir }, `rmdir ${t.dir}  # only if tsrun created it`, 'leave no cgroup behind, and never remove one that was there before'));
  }
  // tsrun's own parents (/tsrun/<root>, /tsrun) go too once no container uses them; a
  // --cgroup-parent or linux.cgroupsPath parent belongs to whoever named it and stays
  if (spec.linux.cgroupsPath === undefined && spec.annotations?.[CGROUP_PARENT_ANNOTATION] === undefined) {
    const levels: string[] = [];
    for (let d = defaultParent; d !== '/' && d !== '.' && d !== ''; d = posix.dirname(d)) levels.push(d);
    for (const t of targets) {
      // tsrun's own path for this root and id: a run killed between its mkdir and recording it
      // in the state leaves the directory unrecorded; rmdir(2) of an empty cgroup harms no one
      steps.push(step('cleanup', { verb: 'remove', path: t.dir, value: 'if-empty' }, `rmdir ${t.dir}  # if empty, even unrecorded: tsrun's own path for this root and id`, 'a run killed before it recorded its mkdir leaves nothing behind'));
      for (let up = dirname(t.dir), i = 0; i < levels.length; up = dirname(up), i++) {
        steps.push(step('cleanup', { verb: 'remove', path: up, value: 'if-empty' }, `rmdir ${up}  # if no other container uses it`, 'leave no cgroup behind'));
      }
    }
  }
  return { cgroupPath, targets, writes: mapping.writes, warnings: mapping.warnings, steps, childSteps };
}

function killTargetOf(targets: CgroupTarget[]): CgroupTarget | undefined {
  const v1 = targets.filter((t) => t.hierarchy.version === 1);
  if (v1.length === 0) return targets.find((t) => t.hierarchy.version === 2);
  // hybrid/v1: the processes are in every hierarchy; freeze where the freezer is
  return v1.find((t) => t.hierarchy.controllers.includes('freezer')) ?? v1.find((t) => t.hierarchy.controllers.includes('pids')) ?? v1[0];
}

// ---- execution -------------------------------------------------------------------------

// created on first use: module code also runs while the CLI's start-up snapshot is built,
// where SharedArrayBuffer does not exist (scripts/bundle.mjs)
let sleepCell: Int32Array | undefined;
/** Synchronous sleep; the executor runs between clone and GO, where the runtime is synchronous. */
export function sleepMs(ms: number): void {
  Atomics.wait((sleepCell ??= new Int32Array(new SharedArrayBuffer(4))), 0, 0, ms);
}

function kernelError(op: string, e: unknown): KernelError {
  const err = e as NodeJS.ErrnoException;
  const errno = typeof err.errno === 'number' ? Math.abs(err.errno) : 0;
  const name = err.code ?? 'EIO';
  const msg = (err.message ?? '').replace(/^[A-Z]+: /, '').replace(/,.*$/, '');
  return new KernelError(op, errno, name, msg, CONTROL);
}

/** write(2) into a cgroup file without O_CREAT: a missing file is ENOENT, as on cgroupfs. */
export function writeCgroupFile(path: string, value: string): void {
  let fd: number;
  try {
    fd = openSync(path, constants.O_WRONLY | constants.O_TRUNC);
  } catch (e) {
    throw kernelError(`open ${path}`, e);
  }
  try {
    writeSync(fd, value);
  } catch (e) {
    throw kernelError(`write "${value}" to ${path}`, e);
  } finally {
    closeSync(fd);
  }
}

export function readCgroupFile(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
}

/** Files a kernel may lack because of a build/boot option; a write to a missing one warns. */
const OPTIONAL_FILES: Record<string, string> = {
  'memory.memsw.limit_in_bytes': 'swap limit ignored: this kernel does not account swap (no memory.memsw.*; boot with swapaccount=1)',
  'memory.swap.max': 'swap limit ignored: this kernel does not account swap (no memory.swap.max)',
};

export interface ExecContext {
  pid?: number;
  /** 'clone-into': the clone did put the init in its cgroup2 cgroup (false: clone3 unavailable) */
  bornInCgroup?: boolean;
  warn?(message: string): void;
  /** how long kill/remove keep trying before giving up (ms) */
  timeoutMs?: number;
  /** mkdir(2) of one cgroup level; unit tests pass one that also creates the files cgroupfs would */
  mkdir?(dir: string): void;
  /** internal: mkdir -p restarts after losing a race with a parent's removal */
  retries?: number;
  /** where 'oom-check' reports an OOM kill (default: stderr) */
  report?(message: string): void;
  /** rmdir(2) of one cgroup level (cgroupfs removes a directory together with its files) */
  rmdir?(dir: string): void;
  /**
   * The directories tsrun's mkdir(2) made for this container: `create` adds to it, `kill` and
   * `remove` act only on its members (absent: nothing is tsrun's, nothing is destroyed).
   */
  created?: Set<string>;
}

function pidsIn(dir: string): number[] {
  const text = readCgroupFile(join(dir, 'cgroup.procs')) ?? '';
  return text.split('\n').filter(Boolean).map(Number);
}

function killAll(pids: number[]): void {
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // ESRCH: already gone
    }
  }
}

function populated(dir: string): boolean {
  const events = readCgroupFile(join(dir, 'cgroup.events'));
  if (events !== undefined) return /populated 1/.test(events);
  if (pidsIn(dir).length) return true;
  return subdirs(dir).some((d) => populated(d));
}

function subdirs(dir: string): string[] {
  try {
    return readdirSync(dir, { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => join(dir, e.name));
  } catch {
    return [];
  }
}

/**
 * Empties a cgroup (and its descendants). v2: cgroup.kill (5.14+), else freeze + kill loop.
 * v1: freezer FROZEN, SIGKILL every pid, THAWED — repeated until nothing is left, because a
 * process can fork between reading cgroup.procs and the kill unless the group is frozen.
 */
export function emptyCgroup(dir: string, ctx: ExecContext = {}): void {
  if (!existsSync(dir)) return;
  const deadline = Date.now() + (ctx.timeoutMs ?? 10_000);
  const hasKill = existsSync(join(dir, 'cgroup.kill'));
  const freezer = existsSync(join(dir, 'freezer.state')) ? 'v1' : existsSync(join(dir, 'cgroup.freeze')) ? 'v2' : undefined;
  const all = (d: string): string[] => [d, ...subdirs(d).flatMap(all)];
  for (let round = 0; ; round++) {
    if (!populated(dir)) return;
    if (Date.now() > deadline) {
      throw new KernelError(`empty cgroup ${dir}`, 16, 'EBUSY', `processes still present after ${round} rounds: ${pidsIn(dir).join(' ')}`, CONTROL);
    }
    if (hasKill) {
      if (round === 0 || round % 10 === 0) writeCgroupFile(join(dir, 'cgroup.kill'), '1');
    } else {
      if (freezer === 'v1') {
        writeCgroupFile(join(dir, 'freezer.state'), 'FROZEN');
        // FREEZING turns FROZEN once every task stopped; bounded, a D-state task may delay it
        for (let i = 0; i < 50 && !/FROZEN/.test(readCgroupFile(join(dir, 'freezer.state')) ?? ''); i++) sleepMs(2);
      } else if (freezer === 'v2') {
        writeCgroupFile(join(dir, 'cgroup.freeze'), '1');
      }
      for (const d of all(dir)) killAll(pidsIn(d));
      if (freezer === 'v1') writeCgroupFile(join(dir, 'freezer.state'), 'THAWED');
      else if (freezer === 'v2') writeCgroupFile(join(dir, 'cgroup.freeze'), '0');
    }
    sleepMs(round < 10 ? 2 : 10);
  }
}

/** rmdir a cgroup and any child cgroups the container made, deepest first; missing is fine. */
export function removeCgroupDir(dir: string, ctx: ExecContext = {}): void {
  if (!existsSync(dir)) return;
  for (const d of subdirs(dir)) removeCgroupDir(d, ctx);
  const deadline = Date.now() + (ctx.timeoutMs ?? 10_000);
  for (;;) {
    try {
      if (ctx.rmdir) ctx.rmdir(dir);
      else rmdirSync(dir);
      return;
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') return;
      // EBUSY: exiting tasks still count for a moment after SIGKILL; kill stragglers again
      if (code !== 'EBUSY' || Date.now() > deadline) throw kernelError(`rmdir ${dir}`, e);
      killAll(pidsIn(dir));
      sleepMs(5);
    }
  }
}

/** mkdir -p, copying `inherit` files from the parent into each level it creates. */
function createCgroupDir(dir: string, inherit: string[] | undefined, ctx: ExecContext): void {
  const missing: string[] = [];
  for (let d = dir; !existsSync(d); d = dirname(d)) {
    missing.unshift(d);
    if (d === dirname(d)) break;
  }
  for (const d of missing) {
    try {
      if (ctx.mkdir) ctx.mkdir(d);
      else mkdirSync(d);
      // only a mkdir that succeeded makes the directory ours: EEXIST means someone else's
      ctx.created?.add(d);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      // ENOENT: another container's cleanup removed the shared parent meanwhile; start over
      if (code === 'ENOENT' && (ctx.retries ?? 0) < 5) return createCgroupDir(dir, inherit, { ...ctx, retries: (ctx.retries ?? 0) + 1 });
      if (code !== 'EEXIST') throw kernelError(`mkdir ${d}`, e);
    }
  }
  // Every level down to `dir`, not only those made here: a level another tsrun made a moment
  // ago may not have its copy yet (v1 cpuset starts empty, and a task cannot join an empty
  // cpuset: ENOSPC), so each run fills what is still empty, top down. Both write the same value.
  for (const f of inherit ?? []) {
    const levels: string[] = [];
    for (let d = dir; d !== dirname(d) && readCgroupFile(join(dirname(d), f)) !== undefined; d = dirname(d)) levels.unshift(d);
    for (const d of levels) {
      const mine = readCgroupFile(join(d, f));
      const parent = readCgroupFile(join(dirname(d), f));
      if (parent !== undefined && parent.trim() && (mine === undefined || !mine.trim())) writeCgroupFile(join(d, f), parent.trim());
    }
  }
}

function enableControllers(dir: string, value: string, ctx: ExecContext): void {
  const path = join(dir, 'cgroup.subtree_control');
  const enabled = new Set((readCgroupFile(path) ?? '').split(/\s+/).filter(Boolean));
  for (const c of value.split(/\s+/).filter(Boolean)) {
    if (enabled.has(c.slice(1))) continue;
    try {
      writeCgroupFile(path, c);
    } catch (e) {
      // one controller failing (e.g. cpuset with a busy parent) must not hide the others
      ctx.warn?.(`could not enable ${c.slice(1)} in ${path}: ${(e as Error).message}`);
    }
  }
}

/** Executes one 'cgroup' parent step (src/runtime's step executor delegates here). */
export function runCgroupAction(a: Extract<ParentAction, { action: 'cgroup' }>, ctx: ExecContext = {}): void {
  switch (a.verb) {
    case 'create':
      createCgroupDir(a.path, a.inherit, ctx);
      return;
    case 'enable':
      enableControllers(a.path, a.value ?? '', ctx);
      return;
    case 'set': {
      const path = join(a.path, a.file ?? '');
      const warning = OPTIONAL_FILES[a.file ?? ''];
      if (warning && !existsSync(path)) {
        ctx.warn?.(warning);
        return;
      }
      writeCgroupFile(path, a.value ?? '');
      return;
    }
    case 'clone-into':
    case 'join':
      // clone-into: nothing to do once the clone did it; without clone3 (Linux < 5.7) the
      // init joins as it would have
      if (a.verb === 'clone-into' && ctx.bornInCgroup) return;
      if (ctx.pid === undefined) throw new Error('cgroup join needs the container pid');
      writeCgroupFile(join(a.path, 'cgroup.procs'), String(ctx.pid));
      return;
    case 'oom-check': {
      const n = oomKillsIn(a.path);
      if (n > 0) {
        const limit = (readCgroupFile(join(a.path, 'memory.max')) ?? readCgroupFile(join(a.path, 'memory.limit_in_bytes')) ?? '').trim();
        const msg = `the container was OOM-killed: it reached its memory limit (${limit ? `${formatBytes(limit)}, ` : ''}oom_kill ${n} in ${a.file ?? 'memory.events'})`;
        (ctx.report ?? ((m: string) => writeSync(2, `tsrun: ${m}\n`)))(msg);
      }
      return;
    }
    case 'kill':
      // a cgroup that existed before the container holds processes that are not its own
      if (!ctx.created?.has(a.path)) return;
      emptyCgroup(a.path, ctx);
      return;
    case 'remove':
      if (a.value === 'if-empty') {
        try {
          rmdirSync(a.path);
        } catch (e) {
          // another container's cgroup is inside (EBUSY/ENOTEMPTY), or it is gone already
          if (!['EBUSY', 'ENOTEMPTY', 'ENOENT'].includes((e as NodeJS.ErrnoException).code ?? '')) throw kernelError(`rmdir ${a.path}`, e);
        }
        return;
      }
      if (!ctx.created?.has(a.path)) return;
      removeCgroupDir(a.path, ctx);
      return;
  }
}

// ---- a small façade for the runtime and the tests ------------------------------------------

/** The container's cgroup: create it, join pids, read it, destroy it. */
export class CgroupManager {
  readonly plan: CgroupPlan;
  /** what create() made: destroy() removes only these */
  readonly created = new Set<string>();
  constructor(
    spec: Spec,
    readonly id: string,
    readonly layout: CgroupLayout = hostLayout(),
    opts: PlanOptions = {},
  ) {
    this.plan = planCgroup(spec, id, layout, opts);
  }

  get targets(): CgroupTarget[] {
    return this.plan.targets;
  }

  /** Runs the prepare steps; on failure removes what it created and rethrows. */
  create(ctx: ExecContext = {}): void {
    try {
      for (const s of this.plan.steps) if (s.phase === 'prepare' && s.action === 'cgroup') runCgroupAction(s, { ...ctx, created: this.created });
    } catch (e) {
      try {
        this.destroy(ctx);
      } catch {
        // the original error matters more
      }
      throw e;
    }
  }

  /** Puts a running process (not a fresh init) into every directory: cgroup.procs. */
  join(pid: number): void {
    joinTargets(this.targets, pid);
  }

  destroy(ctx: ExecContext = {}): void {
    for (const s of this.plan.steps) if (s.phase === 'cleanup' && s.action === 'cgroup') runCgroupAction(s, { ...ctx, created: this.created });
  }

  dirFor(controller: string): string | undefined {
    const h = controller === 'unified' ? this.layout.unified : this.layout.controllers[controller];
    return this.targets.find((t) => t.hierarchy === h)?.dir;
  }

  oomKilled(): boolean {
    return wasOomKilled(this.targets);
  }
}

function formatBytes(v: string): string {
  const n = Number(v);
  if (!Number.isFinite(n) || n >= 2 ** 62) return v;
  return n % (1024 * 1024) === 0 ? `${n / 1024 / 1024} MiB` : `${n} bytes`;
}

/** The OOM-kill counter of one memory cgroup directory, v1 or v2 (0 when none or unknown). */
export function oomKillsIn(dir: string): number {
  const text = readCgroupFile(join(dir, 'memory.events')) ?? readCgroupFile(join(dir, 'memory.oom_control'));
  const m = text ? /^oom_kill (\d+)$/m.exec(text) : null;
  return m ? Number(m[1]) : 0;
}

/**
 * Pause/unpause (docker pause, OCI has none): the freezer stops every task of the cgroup
 * where it stands (v1 freezer.state FROZEN, v2 cgroup.freeze 1) and waits until the kernel
 * says the whole group is frozen.
 */
export function setFrozen(targets: CgroupTarget[], frozen: boolean, ctx: ExecContext = {}): void {
  const v1 = targets.find((t) => t.hierarchy.version === 1 && t.hierarchy.controllers.includes('freezer'));
  const v2 = targets.find((t) => t.hierarchy.version === 2 && existsSync(join(t.dir, 'cgroup.freeze')));
  const deadline = Date.now() + (ctx.timeoutMs ?? 5_000);
  if (v1) {
    const file = join(v1.dir, 'freezer.state');
    writeCgroupFile(file, frozen ? 'FROZEN' : 'THAWED');
    while (frozen && !/^FROZEN/.test(readCgroupFile(file) ?? '')) {
      if (Date.now() > deadline) throw new KernelError(`freeze ${v1.dir}`, 16, 'EBUSY', 'still FREEZING (a task in uninterruptible sleep?)', CONTROL);
      sleepMs(2);
    }
    return;
  }
  if (v2) {
    writeCgroupFile(join(v2.dir, 'cgroup.freeze'), frozen ? '1' : '0');
    const want = frozen ? /^frozen 1$/m : /^frozen 0$/m;
    while (!want.test(readCgroupFile(join(v2.dir, 'cgroup.events')) ?? '')) {
      if (Date.now() > deadline) throw new KernelError(`${frozen ? 'freeze' : 'thaw'} ${v2.dir}`, 16, 'EBUSY', 'cgroup.events does not report the change', CONTROL);
      sleepMs(2);
    }
    return;
  }
  throw new UnsupportedError('pause needs the freezer: no v1 freezer hierarchy and no cgroup.freeze (cgroup v2, Linux 5.2) here');
}

/** The container's cgroup targets from its saved cleanup steps (for pause/unpause/stats). */
export function targetsFromSteps(layout: CgroupLayout, steps: readonly { action: string; verb?: string; path?: string; value?: string }[]): CgroupTarget[] {
  const hs = [...layout.v1, ...(layout.unified ? [layout.unified] : [])];
  return cgroupDirsFromSteps(steps).flatMap((dir) => {
    const h = hs.filter((x) => dir.startsWith(`${x.mountPoint}/`)).sort((a, b) => b.mountPoint.length - a.mountPoint.length)[0];
    return h ? [{ hierarchy: h, dir }] : [];
  });
}

/** Puts `pid` into every directory of the container's cgroup (exec: the new process shares the limits). */
export function joinTargets(targets: CgroupTarget[], pid: number): void {
  for (const t of targets) writeCgroupFile(join(t.dir, 'cgroup.procs'), String(pid));
}

/**
 * OOM verdict from a container's saved cleanup steps (state.json keeps them): reads the
 * memory cgroup the 'oom-check' step names. For `inspect` of a stopped, not yet removed
 * container, whose cgroup still exists.
 */
export function oomKilledFromSteps(steps: readonly { action: string; verb?: string; path?: string }[]): boolean {
  const s = steps.find((x) => x.action === 'cgroup' && x.verb === 'oom-check');
  return s?.path ? oomKillsIn(s.path) > 0 : false;
}

/** The container's cgroup directories, from its saved cleanup steps. */
export function cgroupDirsFromSteps(steps: readonly { action: string; verb?: string; path?: string; value?: string }[]): string[] {
  return steps.filter((x) => x.action === 'cgroup' && x.verb === 'remove' && x.value !== 'if-empty' && x.path).map((x) => x.path!);
}

/** How many times the kernel's OOM killer fired in the memory cgroup (undefined: unknown). */
export function oomKillCount(targets: CgroupTarget[]): number | undefined {
  const t = targets.find((x) => x.hierarchy.controllers.includes('memory'));
  if (!t) return undefined;
  // v2: memory.events counts oom_kill (cgroup-v2.rst); v1: memory.oom_control gained an
  // oom_kill counter in Linux 4.13
  const file = t.hierarchy.version === 2 ? 'memory.events' : 'memory.oom_control';
  const text = readCgroupFile(join(t.dir, file));
  const m = text ? /^oom_kill (\d+)$/m.exec(text) : null;
  if (m) return Number(m[1]);
  if (t.hierarchy.version === 1) {
    // older v1 kernels: the limit was hit and the group is (or was) under OOM
    const under = text ? /^under_oom 1$/m.test(text) : false;
    const failcnt = Number(readCgroupFile(join(t.dir, 'memory.failcnt')) ?? '0');
    if (under || failcnt > 0) return 1;
  }
  return undefined;
}

/**
 * Whether the memory limit's OOM killer fired for this container. Call it after the container
 * exits and before its cgroup is removed; the runtime prints a message and exits 137.
 */
export function wasOomKilled(targets: CgroupTarget[] | CgroupManager): boolean {
  const t = targets instanceof CgroupManager ? targets.targets : targets;
  return (oomKillCount(t) ?? 0) > 0;
}
