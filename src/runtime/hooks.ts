import { childProcess } from '../builtins.js';
import { readSync, writeSync } from 'node:fs';
import { constants as osConstants } from 'node:os';
import { TsrunError } from '../errors.js';
import { hooksOf, hookState, type Hook, type HookKind } from '../controls/hooks.js';
import type { ChildStep, ParentStep, Plan } from '../plan/types.js';
import { errnoName } from '../kernel/errno.js';
import type { Spec } from '../spec/types.js';

// The OCI hooks tsrun runs itself, in the runtime namespaces (prestart, createRuntime,
// poststart, poststop); tsrun-init runs createContainer and startContainer (native/init.c
// run_hook). src/controls/hooks.ts validates them and places them in the plan.

/** A hook that failed: names the hook, its path and how it failed. */
export class HookError extends TsrunError {}

/** Enough output to say why a hook failed, not a flood into one error line. */
function tail(s: string): string {
  const t = s.trim().split('\n').slice(-3).join(' | ');
  return t.length > 400 ? `…${t.slice(-400)}` : t;
}

/**
 * Runs one hook with the state on stdin and waits for it. `args` is the whole argv (argv[0]
 * included, as execv(3)); `env` replaces the environment when given, and the hook inherits
 * tsrun's otherwise (as runc's exec.Cmd with a nil Env). Its output is kept for the error.
 */
export function runHook(kind: HookKind, index: number, h: Hook, state: Record<string, unknown>): void {
  const name = `hook ${kind}[${index}] ${h.path}`;
  const argv = h.args?.length ? h.args : [h.path];
  const env = h.env ? Object.fromEntries(h.env.map((e) => [e.slice(0, e.indexOf('=')), e.slice(e.indexOf('=') + 1)])) : process.env;
  const r = childProcess().spawnSync(h.path, argv.slice(1), {
    argv0: argv[0] ?? h.path,
    env,
    input: JSON.stringify(state),
    encoding: 'utf8',
    stdio: ['pipe', 'pipe', 'pipe'],
    maxBuffer: 1 << 20,
    ...(h.timeout ? { timeout: h.timeout * 1000, killSignal: 'SIGKILL' as const } : {}),
  });
  const out = tail(`${r.stderr ?? ''}\n${r.stdout ?? ''}`);
  const err = r.error as NodeJS.ErrnoException | undefined;
  if (err?.code === 'ETIMEDOUT') throw new HookError(`${name}: timed out after ${h.timeout} s (hooks[].timeout), killed with SIGKILL`);
  // EPIPE: the hook exited without reading the state; its status says whether it failed
  if (err && err.code !== 'EPIPE') throw new HookError(`${name}: ${err.code ?? 'error'} (${err.message})`, { cause: err });
  if (r.signal) throw new HookError(`${name}: killed by ${r.signal}${out ? `: ${out}` : ''}`);
  if (r.status !== 0) throw new HookError(`${name}: exit status ${r.status}${out ? `: ${out}` : ''}`);
}

function hookSteps(plan: Plan, phase: ParentStep['phase']): Extract<ParentStep, { action: 'hook' }>[] {
  return plan.steps.filter((s): s is Extract<ParentStep, { action: 'hook' }> => s.where === 'parent' && s.action === 'hook' && s.phase === phase);
}

export interface HookTarget {
  id: string;
  spec: Spec;
  bundle?: string;
}

/** prestart then createRuntime, in order; the first failure throws (the caller kills and cleans up the container). */
export function runCreateHooks(plan: Plan, bundle: string | undefined, pid: number): void {
  const state = { ...hookState({ id: plan.id, spec: plan.spec, ...(bundle ? { bundle } : {}) }, 'creating'), pid };
  for (const s of hookSteps(plan, 'create-hooks')) runHook(s.kind, s.index, s.hook, state);
}

/**
 * The plan's own poststart/poststop steps (a `tsrun run`): read from the plan, not the spec,
 * so an exec's plan (the container's spec, no hook steps) runs none.
 */
export function runPlanHooks(plan: Plan, phase: 'poststart' | 'poststop', bundle: string | undefined, pid: number): void {
  const steps = hookSteps(plan, phase);
  if (steps.length === 0) return;
  const state = { ...hookState({ id: plan.id, spec: plan.spec, ...(bundle ? { bundle } : {}) }, phase === 'poststart' ? 'running' : 'stopped'), pid };
  for (const s of steps) {
    if (phase === 'poststart') {
      runHook(s.kind, s.index, s.hook, state);
      continue;
    }
    try {
      runHook(s.kind, s.index, s.hook, state);
    } catch (e) {
      writeSync(2, `tsrun: warning: ${(e as Error).message}\n`);
    }
  }
}

/** poststart: the command runs. A failure throws: runtime-spec 1.3 (runtime.md step 9) has the runtime stop the container. */
export function runPoststartHooks(t: HookTarget, pid: number): void {
  const state = { ...hookState(t, 'running'), pid };
  (hooksOf(t.spec).poststart ?? []).forEach((h, i) => runHook('poststart', i, h, state));
}

/** poststop: after the container is gone. Failures are warnings and the rest still run (runtime.md step 13). */
export function runPoststopHooks(t: HookTarget, pid: number): void {
  const state = { ...hookState(t, 'stopped'), pid };
  (hooksOf(t.spec).poststop ?? []).forEach((h, i) => {
    try {
      runHook('poststop', i, h, state);
    } catch (e) {
      writeSync(2, `tsrun: warning: ${(e as Error).message}\n`);
    }
  });
}

/** Whether the spec has hooks of this kind (so callers skip the work when it has none). */
export function hasHooks(spec: Spec, kind: HookKind): boolean {
  const h = spec.hooks as Record<string, unknown> | undefined;
  return Array.isArray(h?.[kind]) && (h[kind] as unknown[]).length > 0;
}

// native/init.c run_hook: a hook that ran and failed is reported as a negative "errno"
const HOOK_EXITED = 0x10000;
const HOOK_SIGNALED = 0x20000;

/** The error for a createContainer/startContainer hook that tsrun-init reported failed (MSG_ERROR). */
export function initHookError(step: ChildStep, err: number, strerror: (e: number) => string): HookError {
  const kind = step.phase === 'container-hooks' ? 'createContainer' : 'startContainer';
  const name = `hook ${kind}[${step.ints[3] ?? 0n}] ${step.strs[0]}`;
  if (err <= -HOOK_SIGNALED) return new HookError(`${name}: killed by signal ${-err & 0xffff}`);
  if (err <= -HOOK_EXITED) return new HookError(`${name}: exit status ${-err & 0xffff} (its output went to the container's stderr)`);
  if (err === osConstants.errno.ETIMEDOUT) return new HookError(`${name}: timed out after ${step.ints[0]} s (hooks[].timeout), killed with SIGKILL`);
  return new HookError(`${name}: ${errnoName(err)} (${strerror(err)})`);
}

/**
 * After `start` released the init: wait on the start fifo until the command's execve closes
 * the init's write end (EOF), or the init writes "f" because set-up after start (a
 * startContainer hook) failed; native/init.c keeps that end open for this. An init that dies
 * without "f" (killed) also reads as EOF.
 */
export function waitForExec(fd: number, id: string, alive: () => boolean): void {
  const buf = Buffer.alloc(1);
  for (;;) {
    let n: number;
    try {
      n = readSync(fd, buf);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EAGAIN') throw e;
      if (!alive()) return;
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 2);
      continue;
    }
    if (n === 0) return;
    if (buf[0] === 0x66 /* f */) throw new HookError(`container ${id.slice(0, 12)} failed after start, before its command (a startContainer hook: tsrun-init said why on the container's stderr)`);
  }
}
