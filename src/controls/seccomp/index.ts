// seccomp (seccomp(2) SECCOMP_SET_MODE_FILTER; CIS Docker Benchmark 5.21 "do not disable
// the default seccomp profile", workshop seccomp lab): a BPF program the kernel runs on
// every system call of the container, deciding from the call number, the calling
// convention and the register arguments whether it runs, fails with an errno, or kills.
// tsrun compiles the program here in TypeScript (compile.ts) so that it can be printed
// (`tsrun seccomp compile`), questioned (`tsrun seccomp check`) and tested; init only
// hands the bytes to the kernel.
import { readFileSync } from 'node:fs';
import type { BuildContext, ChildStep, Control, Step } from '../../plan/types.js';
import type { FlagDef } from '../../spec/flag-types.js';
import type { Spec } from '../../spec/types.js';
import { SpecError, UsageError } from '../../errors.js';
import { capsFor, DOCKER_DEFAULT_CAPS } from '../capabilities.js';
import { isPrivileged } from '../privileged.js';
import { hostArch } from './arch.js';
import { actionName } from './bpf.js';
import { compile, type Compiled } from './compile.js';
import { builtinProfile } from './default-profile.js';
import { ProfileError, parseDockerProfile, parseProfileText, resolveDocker, validateOci, type DockerProfile } from './profile.js';

export { compile, check, listing, pathStats } from './compile.js';

let warn: (msg: string) => void = (msg) => process.stderr.write(msg + '\n');
/** Tests capture the warnings. */
export function setSeccompWarn(w: (msg: string) => void): void {
  warn = w;
}

/**
 * Reads a profile file: docker's format, an OCI linux.seccomp object (a subset of it), or
 * a whole config.json (its linux.seccomp). `where` prefixes errors.
 */
export function loadProfile(ref: string, where: string): DockerProfile {
  if (ref === 'default' || ref === 'builtin') return builtinProfile();
  let text: string;
  try {
    text = readFileSync(ref, 'utf8');
  } catch (e) {
    throw new UsageError(`${where}: ${ref}: ${(e as NodeJS.ErrnoException).code ?? 'unreadable'} (${(e as Error).message})`, { cause: e });
  }
  try {
    let raw = parseProfileText(text) as Record<string, any>;
    if (raw && typeof raw === 'object' && 'ociVersion' in raw) {
      if (!raw.linux?.seccomp) throw new ProfileError('linux.seccomp', 'this config.json has no seccomp profile');
      raw = raw.linux.seccomp;
    }
    return parseDockerProfile(raw);
  } catch (e) {
    if (e instanceof ProfileError) throw new UsageError(`${where}: ${ref}: ${e.message}`, { cause: e });
    throw e;
  }
}

type Choice = { kind: 'unconfined' } | { kind: 'profile'; profile: DockerProfile; source: string };
const chosen = new WeakMap<Spec, Choice>();

/** The flags path's starting point: the built-in profile, or the config file's `seccomp-profile`. */
export function setSeccompDefault(spec: Spec, configValue?: string): void {
  if (configValue === 'unconfined') chosen.set(spec, { kind: 'unconfined' });
  else if (configValue && configValue !== 'builtin') chosen.set(spec, { kind: 'profile', profile: loadProfile(configValue, 'config "seccomp-profile"'), source: configValue });
  else chosen.set(spec, { kind: 'profile', profile: builtinProfile(), source: 'builtin' });
}

/** `--security-opt seccomp=unconfined|builtin|PROFILE.json` (also docker's old `seccomp:`); false for other forms. */
export function applySeccompSecurityOpt(spec: Spec, opt: string): boolean {
  const m = /^seccomp[=:](.*)$/s.exec(opt.trim());
  if (!m) return false;
  const v = m[1]!;
  if (!v) throw new UsageError('--security-opt seccomp: expected seccomp=unconfined, seccomp=builtin or seccomp=PROFILE.json');
  if (v === 'unconfined') chosen.set(spec, { kind: 'unconfined' });
  else chosen.set(spec, { kind: 'profile', profile: loadProfile(v, `--security-opt seccomp=${v}`), source: v });
  return true;
}

/**
 * After every flag: resolves the chosen docker profile against the container's final
 * capabilities into spec.linux.seccomp (what config.json shows). --privileged means none.
 */
export function finishSeccomp(spec: Spec): void {
  const c = chosen.get(spec);
  if (!c) return;
  if (c.kind === 'unconfined' || isPrivileged(spec)) {
    delete spec.linux.seccomp;
    return;
  }
  const caps = (spec.process.capabilities ?? capsFor(DOCKER_DEFAULT_CAPS)).bounding ?? [];
  spec.linux.seccomp = resolveDocker(c.profile, { caps, arch: hostArch() });
}

// Keyed by content, not object: a process that starts many containers (the library API,
// benchmarks) builds a new spec each time with the same profile; compiling it once saves
// most of the planning time. Small and bounded: profiles rarely vary within a process.
const compiled = new Map<string, Compiled>();
const MAX_CACHED = 16;

/** Validates and compiles a spec's linux.seccomp (once per object); errors name the JSON path. */
export function compileSpec(spec: Spec, quiet = false): Compiled | undefined {
  const s = spec.linux.seccomp;
  if (!s) return undefined;
  const key = JSON.stringify(s);
  const done = compiled.get(key);
  if (done) return done;
  let c: Compiled;
  try {
    c = compile(validateOci(s), { native: hostArch() });
  } catch (e) {
    if (e instanceof ProfileError) throw new SpecError(`linux.seccomp.${e.path}`, e.message.slice(e.path.length + 2), { cause: e });
    throw e;
  }
  if (!quiet) for (const w of c.warnings) warn(`warning: seccomp: ${w}`);
  if (compiled.size >= MAX_CACHED) compiled.delete(compiled.keys().next().value!);
  compiled.set(key, c);
  return c;
}

/**
 * Compiles the built-in profile as `run` resolves it by default (docker's default
 * capabilities, this arch) into the cache above. The CLI calls it while its start-up
 * snapshot is built, so a plain `tsrun run` finds the filter compiled (scripts/bundle.mjs).
 */
export function warmBuiltinProfile(): void {
  const spec = { ociVersion: '1.2.0', process: { args: [], cwd: '/' }, root: { path: '/' }, linux: { namespaces: [] } } as unknown as Spec;
  setSeccompDefault(spec);
  finishSeccomp(spec);
  compileSpec(spec, true);
}

/** How many compiled filters the cache holds (tests of the warm-up). */
export function compiledCount(): number {
  return compiled.size;
}

// --security-opt is one row shared with the privilege controls (src/cli/flags.ts); the
// seccomp form is handled by applySeccompSecurityOpt, so there is no row here.
export const flags: FlagDef[] = [];

export const control: Control = {
  id: 'seccomp',
  title: 'seccomp: a BPF filter on every system call',
  ref: 'CIS 5.21 (do not disable the default seccomp profile)',
  // A bundle's profile (an engine's) is skipped-name-tolerant without a word, as runc is:
  // the warning would land in the container's stderr. `run`'s profiles are the user's: warn.
  validate(ctx: BuildContext): void {
    compileSpec(ctx.spec, !ctx.overlay);
  },
  steps(ctx: BuildContext): Step[] {
    const c = compileSpec(ctx.spec, !ctx.overlay);
    if (!c) return [];
    const s = ctx.spec.linux.seccomp!;
    const nnp = Boolean(ctx.spec.process.noNewPrivileges);
    const rules = s.syscalls?.length ?? 0;
    const step: ChildStep = {
      where: 'child',
      // seccomp(2): without no_new_privs, loading a filter needs CAP_SYS_ADMIN, which the
      // capability steps are about to drop; so the filter goes in first and must allow
      // the rest of the set-up (setgroups, setres[ug]id, capset, prctl, open, execve).
      phase: nnp ? 'seccomp' : 'seccomp-early',
      op: 'SECCOMP',
      ints: [BigInt(c.flags)],
      strs: [],
      blob: c.bytes,
      text: `seccomp(SECCOMP_SET_MODE_FILTER, ${c.flags}, {${c.prog.length} BPF instructions: ${rules} rules, default ${actionName(c.defaultAction)}, arches ${c.arches.join(' ')}})`,
      why: nnp
        ? 'last before execve, under no_new_privs: the filter need not allow the runtime\'s own set-up (CIS 5.21; `tsrun seccomp compile` prints it)'
        : 'loaded while init still holds CAP_SYS_ADMIN (no no_new_privs): seccomp(2) needs one of them (CIS 5.21; `tsrun seccomp compile` prints it)',
      control: 'seccomp',
    };
    return [step];
  },
};
