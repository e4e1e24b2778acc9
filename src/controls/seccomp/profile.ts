// Seccomp profiles in the two shapes users bring:
//  - docker's (moby) profile JSON: defaultAction, defaultErrnoRet, architectures or
//    archMap, syscalls[] with name(s)/action/errnoRet/args and includes/excludes that
//    depend on the container's capabilities, the arch and the kernel version;
//  - the OCI runtime spec's linux.seccomp object (what a bundle's config.json holds, and
//    what a docker profile resolves to for one container).
// Validation errors name the JSON path (`syscalls[3].args[0].op`).
import { release } from 'node:os';
import type { Seccomp, SeccompRule } from '../../spec/types.js';
import { ARCHES, OTHER_SCMP_ARCHES, type ArchName } from './arch.js';
import { quoteValue } from '../../spec/quote.js';

export const ACTIONS = [
  'SCMP_ACT_ALLOW',
  'SCMP_ACT_ERRNO',
  'SCMP_ACT_KILL',
  'SCMP_ACT_KILL_THREAD',
  'SCMP_ACT_KILL_PROCESS',
  'SCMP_ACT_TRAP',
  'SCMP_ACT_LOG',
  'SCMP_ACT_TRACE',
  'SCMP_ACT_NOTIFY',
] as const;
/** Refused: TRACE needs a ptrace supervisor, NOTIFY a listener fd sent to an agent; tsrun provides neither. */
export const UNSUPPORTED_ACTIONS = new Set(['SCMP_ACT_TRACE', 'SCMP_ACT_NOTIFY']);
export const OPS = ['SCMP_CMP_NE', 'SCMP_CMP_LT', 'SCMP_CMP_LE', 'SCMP_CMP_EQ', 'SCMP_CMP_GE', 'SCMP_CMP_GT', 'SCMP_CMP_MASKED_EQ'] as const;
export type Op = (typeof OPS)[number];
/** seccomp(2) flags the OCI spec names, with their SECCOMP_FILTER_FLAG_* values. */
export const FILTER_FLAGS: Record<string, number> = {
  SECCOMP_FILTER_FLAG_TSYNC: 1,
  SECCOMP_FILTER_FLAG_LOG: 2,
  SECCOMP_FILTER_FLAG_SPEC_ALLOW: 4,
};
/** MAX_ERRNO (include/linux/err.h): the kernel keeps 16 bits but libc reads -1..-4095 as errors */
const MAX_ERRNO = 4095;

export class ProfileError extends Error {
  constructor(
    readonly path: string,
    message: string,
  ) {
    super(`${path}: ${message}`);
  }
}

export interface ArgRule {
  index: number;
  value: number;
  valueTwo?: number;
  op: Op;
}

export interface Filter {
  caps?: string[];
  arches?: string[];
  minKernel?: string;
}

export interface DockerRule {
  name?: string;
  names?: string[];
  action: string;
  errnoRet?: number;
  args?: ArgRule[];
  comment?: string;
  includes?: Filter;
  excludes?: Filter;
}

export interface DockerProfile {
  defaultAction: string;
  defaultErrnoRet?: number;
  architectures?: string[];
  archMap?: { architecture: string; subArchitectures: string[] | null }[];
  flags?: string[];
  listenerPath?: string;
  syscalls?: DockerRule[];
}

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

function keys(o: Obj, path: string, allowed: readonly string[]): void {
  for (const k of Object.keys(o)) if (!allowed.includes(k)) throw new ProfileError(path ? `${path}.${k}` : k, `unknown field (known: ${allowed.join(', ')})`);
}
function str(v: unknown, path: string): string {
  if (typeof v !== 'string') throw new ProfileError(path, `expected a string, got ${quoteValue(v)}`);
  return v;
}
function strList(v: unknown, path: string): string[] {
  if (v === null || v === undefined) return [];
  if (!Array.isArray(v)) throw new ProfileError(path, `expected an array of strings, got ${quoteValue(v)}`);
  return v.map((x, i) => str(x, `${path}[${i}]`));
}
function action(v: unknown, path: string): string {
  const a = str(v, path);
  if (!(ACTIONS as readonly string[]).includes(a)) throw new ProfileError(path, `unknown action "${a}" (known: ${ACTIONS.join(', ')})`);
  if (UNSUPPORTED_ACTIONS.has(a))
    throw new ProfileError(path, `${a} is not supported by tsrun (${a === 'SCMP_ACT_TRACE' ? 'it needs a ptrace(2) tracer' : 'it needs a seccomp agent to receive the listener fd'}); use SCMP_ACT_ERRNO or SCMP_ACT_LOG`);
  return a;
}
function errnoRet(v: unknown, path: string): number | undefined {
  if (v === undefined || v === null) return undefined;
  if (!Number.isInteger(v) || (v as number) < 0 || (v as number) > MAX_ERRNO) throw new ProfileError(path, `expected an errno number 0..${MAX_ERRNO}, got ${quoteValue(v)}`);
  return v as number;
}
function u64(v: unknown, path: string): number {
  if (!Number.isSafeInteger(v) || (v as number) < 0) throw new ProfileError(path, `expected an unsigned integer (at most 2^53-1 in JSON), got ${quoteValue(v)}`);
  return v as number;
}

function args(v: unknown, path: string): ArgRule[] | undefined {
  if (v === undefined || v === null) return undefined;
  if (!Array.isArray(v)) throw new ProfileError(path, 'expected an array of {index, value, valueTwo, op}');
  return v.map((a, i) => {
    const p = `${path}[${i}]`;
    if (!isObj(a)) throw new ProfileError(p, 'expected an object {index, value, valueTwo, op}');
    keys(a, p, ['index', 'value', 'valueTwo', 'op']);
    if (!Number.isInteger(a.index) || (a.index as number) < 0 || (a.index as number) > 5)
      throw new ProfileError(`${p}.index`, `expected 0..5 (a system call has six argument registers), got ${quoteValue(a.index)}`);
    const op = str(a.op, `${p}.op`);
    if (!(OPS as readonly string[]).includes(op)) throw new ProfileError(`${p}.op`, `unknown operator "${op}" (known: ${OPS.join(', ')})`);
    const r: ArgRule = { index: a.index as number, value: u64(a.value ?? 0, `${p}.value`), op: op as Op };
    if (a.valueTwo !== undefined) r.valueTwo = u64(a.valueTwo, `${p}.valueTwo`);
    return r;
  });
}

function filter(v: unknown, path: string): Filter | undefined {
  if (v === undefined || v === null) return undefined;
  if (!isObj(v)) throw new ProfileError(path, 'expected an object {caps, arches, minKernel}');
  keys(v, path, ['caps', 'arches', 'minKernel']);
  const f: Filter = {};
  if (v.caps != null) f.caps = strList(v.caps, `${path}.caps`);
  if (v.arches != null) f.arches = strList(v.arches, `${path}.arches`);
  if (v.minKernel != null) {
    f.minKernel = str(v.minKernel, `${path}.minKernel`);
    if (!/^\d+\.\d+(\.\d+)?$/.test(f.minKernel)) throw new ProfileError(`${path}.minKernel`, `expected a kernel version like "4.8", got "${f.minKernel}"`);
  }
  return f;
}

function arches(v: unknown, path: string): string[] {
  const list = strList(v, path);
  list.forEach((a, i) => {
    if (!Object.values(ARCHES).some((x) => x.scmp === a) && !OTHER_SCMP_ARCHES.has(a)) throw new ProfileError(`${path}[${i}]`, `unknown architecture "${a}" (e.g. SCMP_ARCH_X86_64, SCMP_ARCH_AARCH64)`);
  });
  return list;
}

function flagList(v: unknown, path: string): string[] | undefined {
  if (v === undefined || v === null) return undefined;
  const l = strList(v, path);
  l.forEach((f, i) => {
    if (!(f in FILTER_FLAGS)) throw new ProfileError(`${path}[${i}]`, `unknown or unsupported flag "${f}" (known: ${Object.keys(FILTER_FLAGS).join(', ')})`);
  });
  return l;
}

/** Parses and validates docker's profile format. */
export function parseDockerProfile(raw: unknown): DockerProfile {
  if (!isObj(raw)) throw new ProfileError('(top)', 'expected a JSON object with defaultAction and syscalls');
  keys(raw, '', ['defaultAction', 'defaultErrnoRet', 'architectures', 'archMap', 'flags', 'listenerPath', 'listenerMetadata', 'syscalls', 'comment']);
  if (raw.listenerPath) throw new ProfileError('listenerPath', 'seccomp user notification (SCMP_ACT_NOTIFY) is not supported by tsrun');
  const p: DockerProfile = { defaultAction: action(raw.defaultAction, 'defaultAction') };
  const der = errnoRet(raw.defaultErrnoRet, 'defaultErrnoRet');
  if (der !== undefined) p.defaultErrnoRet = der;
  if (raw.architectures != null) p.architectures = arches(raw.architectures, 'architectures');
  if (raw.archMap != null) {
    if (!Array.isArray(raw.archMap)) throw new ProfileError('archMap', 'expected an array of {architecture, subArchitectures}');
    p.archMap = raw.archMap.map((m, i) => {
      const path = `archMap[${i}]`;
      if (!isObj(m)) throw new ProfileError(path, 'expected {architecture, subArchitectures}');
      keys(m, path, ['architecture', 'subArchitectures']);
      return { architecture: arches([m.architecture], `${path}.architecture`)[0]!, subArchitectures: arches(m.subArchitectures, `${path}.subArchitectures`) };
    });
  }
  const fl = flagList(raw.flags, 'flags');
  if (fl) p.flags = fl;
  if (raw.syscalls != null && !Array.isArray(raw.syscalls)) throw new ProfileError('syscalls', 'expected an array of rules');
  p.syscalls = ((raw.syscalls as unknown[] | undefined) ?? []).map((r, i) => {
    const path = `syscalls[${i}]`;
    if (!isObj(r)) throw new ProfileError(path, 'expected an object {names, action, ...}');
    keys(r, path, ['name', 'names', 'action', 'errnoRet', 'args', 'comment', 'includes', 'excludes']);
    const rule: DockerRule = { action: action(r.action, `${path}.action`) };
    if (r.name != null) rule.name = str(r.name, `${path}.name`);
    if (r.names != null) rule.names = strList(r.names, `${path}.names`);
    if (!rule.name && !rule.names?.length) throw new ProfileError(`${path}.names`, 'a rule needs at least one system call name');
    const er = errnoRet(r.errnoRet, `${path}.errnoRet`);
    if (er !== undefined) rule.errnoRet = er;
    const a = args(r.args, `${path}.args`);
    if (a?.length) rule.args = a;
    const inc = filter(r.includes, `${path}.includes`);
    if (inc) rule.includes = inc;
    const exc = filter(r.excludes, `${path}.excludes`);
    if (exc) rule.excludes = exc;
    return rule;
  });
  return p;
}

/** Parses JSON text; syntax errors keep JSON.parse's position. */
export function parseProfileText(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch (e) {
    throw new ProfileError('(json)', `invalid JSON: ${(e as Error).message}`);
  }
}

/** Validates an OCI linux.seccomp object (a bundle's); paths are relative to it. */
export function validateOci(raw: unknown): Seccomp {
  if (!isObj(raw)) throw new ProfileError('(top)', 'expected an object');
  keys(raw, '', ['defaultAction', 'defaultErrnoRet', 'architectures', 'flags', 'listenerPath', 'listenerMetadata', 'syscalls']);
  if (raw.listenerPath) throw new ProfileError('listenerPath', 'seccomp user notification is not supported by tsrun');
  const s: Seccomp = { defaultAction: action(raw.defaultAction, 'defaultAction') };
  const der = errnoRet(raw.defaultErrnoRet, 'defaultErrnoRet');
  if (der !== undefined) s.defaultErrnoRet = der;
  if (raw.architectures != null) s.architectures = arches(raw.architectures, 'architectures');
  const fl = flagList(raw.flags, 'flags');
  if (fl) s.flags = fl;
  if (raw.syscalls != null && !Array.isArray(raw.syscalls)) throw new ProfileError('syscalls', 'expected an array');
  s.syscalls = ((raw.syscalls as unknown[] | undefined) ?? []).map((r, i) => {
    const path = `syscalls[${i}]`;
    if (!isObj(r)) throw new ProfileError(path, 'expected an object {names, action, errnoRet, args}');
    keys(r, path, ['names', 'action', 'errnoRet', 'args']);
    const names = strList(r.names, `${path}.names`);
    if (!names.length) throw new ProfileError(`${path}.names`, 'a rule needs at least one system call name');
    const rule: SeccompRule = { names, action: action(r.action, `${path}.action`) };
    const er = errnoRet(r.errnoRet, `${path}.errnoRet`);
    if (er !== undefined) rule.errnoRet = er;
    const a = args(r.args, `${path}.args`);
    if (a?.length) rule.args = a;
    return rule;
  });
  return s;
}

function kernelAtLeast(min: string, kernel: string): boolean {
  const p = (v: string) => v.split(/[.-]/).slice(0, 3).map((x) => Number.parseInt(x, 10) || 0);
  const [a, b] = [p(kernel), p(min)];
  for (let i = 0; i < 3; i++) if ((a[i] ?? 0) !== (b[i] ?? 0)) return (a[i] ?? 0) > (b[i] ?? 0);
  return true;
}

export interface ResolveInput {
  /** the container's capabilities (bounding set), CAP_ names */
  caps: readonly string[];
  arch: 'x86_64' | 'aarch64';
  /** uname -r; defaults to this host's */
  kernel?: string;
}

/**
 * Docker profile → the OCI object for one container: keeps the rules whose includes hold
 * (every listed capability held, this arch listed, kernel new enough) and whose excludes
 * do not (no listed capability held, this arch not listed), and picks the architectures
 * (the profile's list, or the archMap entry of this arch with its sub-architectures).
 */
export function resolveDocker(p: DockerProfile, input: ResolveInput): Seccomp {
  const native = ARCHES[input.arch];
  const kernel = input.kernel ?? release();
  const caps = new Set(input.caps.map((c) => (c.toUpperCase().startsWith('CAP_') ? c.toUpperCase() : `CAP_${c.toUpperCase()}`)));
  const capName = (c: string) => (c.toUpperCase().startsWith('CAP_') ? c.toUpperCase() : `CAP_${c.toUpperCase()}`);
  let architectures = p.architectures ?? [];
  if (!architectures.length && p.archMap) {
    const m = p.archMap.find((x) => x.architecture === native.scmp);
    if (m) architectures = [m.architecture, ...(m.subArchitectures ?? [])];
  }
  const out: Seccomp = { defaultAction: p.defaultAction };
  if (p.defaultErrnoRet !== undefined) out.defaultErrnoRet = p.defaultErrnoRet;
  if (architectures.length) out.architectures = architectures;
  if (p.flags?.length) out.flags = [...p.flags];
  out.syscalls = [];
  for (const r of p.syscalls ?? []) {
    const inc = r.includes;
    if (inc?.arches?.length && !inc.arches.includes(native.goarch)) continue;
    if (inc?.caps?.length && !inc.caps.every((c) => caps.has(capName(c)))) continue;
    if (inc?.minKernel && !kernelAtLeast(inc.minKernel, kernel)) continue;
    const exc = r.excludes;
    if (exc?.arches?.length && exc.arches.includes(native.goarch)) continue;
    if (exc?.caps?.length && exc.caps.some((c) => caps.has(capName(c)))) continue;
    if (exc?.minKernel && kernelAtLeast(exc.minKernel, kernel)) continue;
    const names = [...(r.name ? [r.name] : []), ...(r.names ?? [])];
    const rule: SeccompRule = { names, action: r.action };
    if (r.errnoRet !== undefined) rule.errnoRet = r.errnoRet;
    if (r.args?.length) rule.args = r.args.map((a) => ({ ...a }));
    out.syscalls.push(rule);
  }
  return out;
}

/** The arch names a resolved profile covers that tsrun compiles (the native one first). */
export function compiledArches(s: Seccomp, native: 'x86_64' | 'aarch64'): { arches: ArchName[]; skipped: string[] } {
  const list = s.architectures?.length ? s.architectures : [ARCHES[native].scmp];
  const arches: ArchName[] = [];
  const skipped: string[] = [];
  for (const a of list) {
    const info = Object.values(ARCHES).find((x) => x.scmp === a);
    if (info && !arches.includes(info.name)) arches.push(info.name);
    else if (!info) skipped.push(a);
  }
  if (!arches.includes(native)) arches.unshift(native);
  return { arches, skipped };
}
