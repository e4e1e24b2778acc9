// OCI hooks (runtime-spec config.md "POSIX-platform Hooks", runtime.md "Lifecycle"): programs
// the engine asks the runtime to run at fixed points of a container's life, each given the
// container's state as JSON on stdin. Docker puts its libnetwork `prestart` hook in every
// container (it moves the network into the new network namespace), so a runtime without hooks
// cannot run a single Docker container.
//
// Hooks come from config.json, which the engine writes: they are trusted like the rest of the
// bundle, never taken from an image. Where each runs (docs/oci-runtime.md):
//   prestart, createRuntime   tsrun (runtime namespaces), while tsrun-init waits before pivot_root
//   createContainer           forked by tsrun-init in the container's namespaces, before pivot_root:
//                             the path is a host path (a host binary inside the container's
//                             namespaces, which the spec requires — see the docs for the trade-off)
//   startContainer            forked by tsrun-init after `start`, with the container's credentials
//                             and seccomp filter, just before the command; the path is the container's
//   poststart                 tsrun, once the command runs, before `start` (or `run`) returns
//   poststop                  tsrun, after the container is deleted, before `delete` returns
import { SpecError } from '../errors.js';
import { child, parent } from '../plan/step.js';
import type { BuildContext, Control, Step } from '../plan/types.js';
import type { Spec } from '../spec/types.js';

export const HOOK_KINDS = ['prestart', 'createRuntime', 'createContainer', 'startContainer', 'poststart', 'poststop'] as const;
export type HookKind = (typeof HOOK_KINDS)[number];

export interface Hook {
  path: string;
  args?: string[];
  env?: string[];
  /** seconds; the hook is killed (SIGKILL) and counts as failed after it */
  timeout?: number;
}

export type Hooks = Partial<Record<HookKind, Hook[]>>;

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

const isStrings = (v: unknown): v is string[] => Array.isArray(v) && v.every((s) => typeof s === 'string');

/** The spec's hooks, checked field by field (each error names the field). Kinds tsrun does not know are refused. */
export function hooksOf(spec: Spec): Hooks {
  const h = spec.hooks;
  if (h === undefined || h === null) return {};
  if (!isObject(h)) throw new SpecError('hooks', 'must be an object of hook arrays');
  const out: Hooks = {};
  for (const [kind, list] of Object.entries(h)) {
    if (!(HOOK_KINDS as readonly string[]).includes(kind)) throw new SpecError(`hooks.${kind}`, `unknown hook kind (known: ${HOOK_KINDS.join(', ')})`);
    if (list === null || list === undefined) continue;
    if (!Array.isArray(list)) throw new SpecError(`hooks.${kind}`, 'must be an array of {"path": ...}');
    out[kind as HookKind] = list.map((e, i) => {
      const f = `hooks.${kind}[${i}]`;
      if (!isObject(e)) throw new SpecError(f, 'must be an object {"path": "/abs/path", "args": [...], "env": [...], "timeout": N}');
      if (typeof e.path !== 'string' || !e.path.startsWith('/')) throw new SpecError(`${f}.path`, 'required: an absolute path (config.md: "path MUST be absolute")');
      if (e.args !== undefined && !isStrings(e.args)) throw new SpecError(`${f}.args`, 'must be an array of strings');
      if (e.env !== undefined && !isStrings(e.env)) throw new SpecError(`${f}.env`, 'must be an array of strings ("KEY=value")');
      if (e.env !== undefined && e.env.some((v) => !v.includes('='))) throw new SpecError(`${f}.env`, 'each entry must be KEY=value');
      if (e.timeout !== undefined && (typeof e.timeout !== 'number' || !Number.isInteger(e.timeout) || e.timeout <= 0)) {
        throw new SpecError(`${f}.timeout`, `must be an integer number of seconds greater than zero, got ${JSON.stringify(e.timeout)}`);
      }
      const hook: Hook = { path: e.path };
      if (e.args !== undefined) hook.args = e.args as string[];
      if (e.env !== undefined) hook.env = e.env as string[];
      if (e.timeout !== undefined) hook.timeout = e.timeout as number;
      return hook;
    });
  }
  return out;
}

/** The state object of runtime.md "State" without its pid, which only the moment of the call knows. */
export function hookState(ctx: { id: string; spec: Spec; bundle?: string }, status: 'creating' | 'created' | 'running' | 'stopped'): Record<string, unknown> {
  return { ociVersion: ctx.spec.ociVersion, id: ctx.id, status, bundle: ctx.bundle ?? '', annotations: ctx.spec.annotations ?? {} };
}

/** The JSON tsrun-init completes with its own pid and `}` (native/init.c run_hook). */
function statePrefix(state: Record<string, unknown>): Uint8Array {
  const json = JSON.stringify({ ...state, pid: 0 });
  return new TextEncoder().encode(json.slice(0, json.lastIndexOf('0}')));
}

function describe(h: Hook): string {
  const argv = h.args ?? [h.path];
  return [h.path, ...(argv.length > 1 ? [`argv=${JSON.stringify(argv)}`] : []), ...(h.env?.length ? [`env=${JSON.stringify(h.env)}`] : []), ...(h.timeout ? [`timeout=${h.timeout}s`] : [])].join(' ');
}

const WHY: Record<HookKind, string> = {
  prestart: 'OCI prestart (deprecated, still what Docker uses for its network): runtime namespace, after the namespaces exist, before pivot_root; a failure stops the container',
  createRuntime: 'OCI createRuntime: runtime namespace, after the mounts, before pivot_root; a failure stops the container',
  createContainer: 'OCI createContainer: in the container namespaces before pivot_root, path resolved on the host (the engine\'s binary, not the image\'s); a failure stops the container',
  startContainer: 'OCI startContainer: in the container with its credentials and seccomp filter, after start, before the command; path resolved in the container; a failure stops the container',
  poststart: 'OCI poststart: runtime namespace, after the command started, before start returns; a failure stops the container (runtime-spec 1.3)',
  poststop: 'OCI poststop: runtime namespace, after the container is deleted; a failure is only a warning',
};

/** createContainer/startContainer run by tsrun-init: the hook as OP_RUN_HOOK. */
function initHook(kind: 'createContainer' | 'startContainer', h: Hook, i: number, ctx: BuildContext): Step {
  // no args: argv[0] is the path, as runc's exec.Cmd and tsrun's own hooks (never an empty argv)
  const argv = h.args?.length ? h.args : [h.path];
  const env = h.env ?? [];
  return child(kind === 'createContainer' ? 'container-hooks' : 'start-hooks', 'hooks', WHY[kind], {
    op: 'RUN_HOOK',
    // the fourth int (the hook's index) is not read by the init: it names the hook in errors
    ints: [BigInt(h.timeout ?? 0), BigInt(argv.length), BigInt(env.length), BigInt(i)],
    strs: [h.path, ...argv, ...env],
    blob: statePrefix(hookState(ctx, kind === 'createContainer' ? 'creating' : 'created')),
    text: `fork(); execve(${JSON.stringify(h.path)}) ← state on stdin  [${kind}[${i}]: ${describe(h)}]; waitpid`,
  });
}

export const control: Control = {
  id: 'hooks',
  title: 'OCI hooks: the engine\'s programs at fixed points of the lifecycle',
  ref: 'OCI runtime-spec config.md "POSIX-platform Hooks", runtime.md "Lifecycle"',
  validate(ctx) {
    const hooks = hooksOf(ctx.spec);
    // A createContainer hook is a host binary running in the container's namespaces. In a PID
    // namespace of its own nothing else runs yet; joined to an existing one, that namespace's
    // processes could reach it through /proc/<pid>/exe (the CVE-2019-5736 shape): refused. A
    // joined user namespace is refused too: the processes already in it hold every capability
    // over the hook's credentials (CAP_SYS_PTRACE included) and see its pid from their own PID
    // namespace, an ancestor of the container's.
    const joined = ctx.spec.linux.namespaces.find((n) => (n.type === 'pid' || n.type === 'user') && n.path);
    if (hooks.createContainer?.length && joined) {
      throw new SpecError('hooks.createContainer', `refused with a joined ${joined.type === 'pid' ? 'PID' : 'user'} namespace (linux.namespaces ${joined.type} path ${joined.path}): a host binary would run where that namespace's processes can open /proc/<pid>/exe; use createRuntime`);
    }
  },
  steps(ctx: BuildContext): Step[] {
    const hooks = hooksOf(ctx.spec);
    const steps: Step[] = [];
    const runtimeSide = (kind: 'prestart' | 'createRuntime' | 'poststart' | 'poststop', phase: 'create-hooks' | 'poststart' | 'poststop') =>
      (hooks[kind] ?? []).forEach((h, i) => steps.push(parent(phase, 'hooks', WHY[kind], { action: 'hook', kind, index: i, hook: h }, `run hook ${kind}[${i}]: ${describe(h)} ← state on stdin`)));
    if (hooks.prestart?.length || hooks.createRuntime?.length) {
      steps.push(
        child('runtime-hooks', 'hooks', 'the mounts are done and pivot_root has not happened: tsrun runs the prestart and createRuntime hooks now (MSG_HOOKS), then lets the init go on', {
          op: 'HOOK_SYNC',
          ints: [],
          strs: [],
          text: 'send(sync, MSG_HOOKS); recv(sync) == MSG_HOOKS_DONE',
        }),
      );
    }
    runtimeSide('prestart', 'create-hooks');
    runtimeSide('createRuntime', 'create-hooks');
    (hooks.createContainer ?? []).forEach((h, i) => steps.push(initHook('createContainer', h, i, ctx)));
    (hooks.startContainer ?? []).forEach((h, i) => steps.push(initHook('startContainer', h, i, ctx)));
    runtimeSide('poststart', 'poststart');
    runtimeSide('poststop', 'poststop');
    return steps;
  },
};
