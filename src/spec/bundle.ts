import { readFileSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { isAbsolute, join, resolve } from 'node:path';
import { SpecError, UsageError } from '../errors.js';
import { describeError } from '../kernel/errno.js';
import type { Process, Spec } from './types.js';
import { quoteValue } from './quote.js';
import { vm } from '../builtins.js';

type Validator = ((v: unknown) => boolean) & { errors?: SchemaError[] | null };
/** ajv's generated validator, loaded on the first bundle (src/spec/schema/README.md) */
let validateConfig: Validator | undefined;

/**
 * The validator's module wrapper; scripts/bundle.mjs compiles the very same text to make the
 * code cache, which V8 accepts only for identical source.
 */
export const VALIDATOR_WRAPPER = ['(function (module, exports) {', '\n})'] as const;

/**
 * From the source tree, ./schema is next to this file; from the bundled CLI and its snapshot
 * (whose import.meta.url is dist/tsrun.mjs) scripts/bundle.mjs puts a copy in dist/schema,
 * with a V8 code cache made after one validation (`.v8cache`): loading and first use then
 * take ~2 ms of CPU instead of ~7 (the 250 KB are neither parsed nor compiled again). A cache
 * from another node is rejected by V8 and the code compiled as usual.
 */
export function loadValidator(file = createRequire(import.meta.url).resolve('./schema/config-validator.cjs')): Validator & { cacheRejected?: boolean } {
  let cachedData: Buffer | undefined;
  try {
    cachedData = readFileSync(`${file}.v8cache`);
  } catch {
    return createRequire(import.meta.url)(file) as Validator;
  }
  const script = new (vm().Script)(VALIDATOR_WRAPPER[0] + readFileSync(file, 'utf8') + VALIDATOR_WRAPPER[1], { filename: file, cachedData });
  const m = { exports: undefined as unknown };
  (script.runInThisContext() as (module: { exports: unknown }, exports: unknown) => void)(m, {});
  const v = m.exports as Validator & { cacheRejected?: boolean };
  v.cacheRejected = script.cachedDataRejected === true;
  return v;
}

interface SchemaError {
  instancePath: string;
  keyword: string;
  params: Record<string, unknown>;
  message?: string;
}

// An OCI bundle: a directory with config.json and (usually) the rootfs it names.

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** `process.env[3]` for the JSON pointer `/process/env/3`. */
function jsonPath(segments: readonly (string | number)[]): string {
  let out = '';
  for (const s of segments) {
    if (typeof s === 'number' || /^\d+$/.test(s)) out += `[${s}]`;
    else if (/^[A-Za-z_$][\w$]*$/.test(s)) out += out ? `.${s}` : s;
    else out += `[${quoteValue(s)}]`;
  }
  return out;
}

function pointerSegments(pointer: string): string[] {
  return pointer === '' ? [] : pointer.slice(1).split('/').map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'));
}

function valueAt(root: unknown, segments: readonly string[]): unknown {
  let v = root;
  for (const s of segments) v = v !== null && typeof v === 'object' ? (v as Record<string, unknown>)[s] : undefined;
  return v;
}

/** A schema failure as tsrun prints it: `config.json: process.env[3]: must be string (got 7)`. */
function schemaError(json: unknown, e: SchemaError, file = 'config.json'): SpecError {
  const at = pointerSegments(e.instancePath);
  const value = valueAt(json, at);
  let msg = e.message ?? `fails the schema's ${e.keyword}`;
  if (e.keyword === 'required') {
    // name the missing field itself, not its parent
    at.push(String(e.params['missingProperty']));
    msg = 'required by the OCI runtime spec';
  } else if (e.keyword === 'enum') {
    msg = `must be one of ${quoteValue(e.params['allowedValues'])}`;
  }
  const field = jsonPath(at);
  const got = e.keyword === 'required' ? '' : ` (got ${quoteValue(value)})`;
  return new SpecError(field ? `${file}: ${field}` : file, `${msg}${got}`);
}

/** Where a string goes to the kernel or to C, a NUL byte would cut it short: refuse it. */
function findNul(v: unknown, at: (string | number)[]): (string | number)[] | undefined {
  if (typeof v === 'string') return v.includes('\0') ? at : undefined;
  if (Array.isArray(v)) {
    for (let i = 0; i < v.length; i++) {
      const hit = findNul(v[i], [...at, i]);
      if (hit) return hit;
    }
  } else if (isObject(v)) {
    for (const [k, x] of Object.entries(v)) {
      if (at.length === 0 && k === 'annotations') continue; // data for engines, never used as a string in C
      const hit = findNul(x, [...at, k]) ?? (k.includes('\0') ? [...at, k] : undefined);
      if (hit) return hit;
    }
  }
  return undefined;
}

/** setgroups(2): EINVAL past NGROUPS_MAX (65536 since Linux 2.6.4, <linux/limits.h>). */
export const NGROUPS_MAX = 65536;

function need(cond: unknown, field: string, msg: string): asserts cond {
  if (!cond) throw new SpecError(field, msg);
}

/**
 * What the schema sees. Its linux.rootfsPropagation enum lists private, shared, slave and
 * unbindable only, while runc (and so every engine's config.json) also takes the recursive
 * rprivate, rshared, rslave and runbindable, which src/controls/rootfs.ts applies: the schema
 * checks those as their non-recursive form.
 */
function schemaView(v: unknown): unknown {
  const l = isObject(v) && isObject(v.linux) ? v.linux : undefined;
  const p = l?.rootfsPropagation;
  if (typeof p !== 'string' || !/^r(private|shared|slave|unbindable)$/.test(p)) return v;
  return { ...(v as Record<string, unknown>), linux: { ...l, rootfsPropagation: p.slice(1) } };
}

/**
 * Checks config.json against the OCI runtime-spec JSON schema (vendored in ./schema and
 * compiled ahead of time by ajv: scripts/gen-schema-validator.mjs), then what tsrun needs
 * beyond the schema. Every failure is one line naming the field as a JSON path. Controls
 * check the meaning (e.g. a capability's name) when they plan.
 */
export function validateSpecShape(v: unknown): Spec {
  validateConfig ??= loadValidator();
  if (!validateConfig(schemaView(v))) {
    const e = validateConfig.errors?.[0];
    throw e ? schemaError(v, e) : new SpecError('config.json', 'does not match the OCI runtime-spec schema');
  }
  need(isObject(v), 'config.json', 'must be a JSON object');
  need(/^1\./.test(v.ociVersion as string), 'config.json: ociVersion', `unsupported version ${quoteValue(v.ociVersion)} (tsrun speaks 1.x)`);
  // optional in the spec (for other platforms and for hooks-only configs); tsrun runs a Linux process
  need(isObject(v.process), 'config.json: process', 'required: tsrun runs a process');
  const p = v.process as Record<string, unknown>;
  need(Array.isArray(p.args) && p.args.length > 0, 'config.json: process.args', 'required: a non-empty array of strings');
  need(isObject(v.root), 'config.json: root', 'required: {"path": "rootfs"}');
  need(isObject(v.linux), 'config.json: linux', 'required on Linux');
  const l = v.linux as Record<string, unknown>;
  // config-linux.md: "If a namespace type is not specified in the namespaces array, the
  // container MUST inherit the runtime namespace of that type" — a missing list is all of them
  if (l.namespaces === undefined) l.namespaces = [];
  need(Array.isArray(l.namespaces), 'config.json: linux.namespaces', 'must be an array of {"type": ...}');
  const nul = findNul(v, []);
  if (nul) throw new SpecError(`config.json: ${jsonPath(nul)}`, `contains a NUL byte, which would end the string early in the kernel (got ${quoteValue(valueAt(v, nul.map(String)))})`);
  const gids = (p.user as { additionalGids?: unknown[] }).additionalGids;
  if (gids && gids.length > NGROUPS_MAX) {
    throw new SpecError('config.json: process.user.additionalGids', `${gids.length} groups; setgroups(2) takes at most NGROUPS_MAX (${NGROUPS_MAX}): EINVAL`);
  }
  // hooks are checked field by field by src/controls/hooks.ts
  return v as unknown as Spec;
}

/**
 * An engine's process.json (`exec --process FILE`): the same schema, as the `process` of a
 * config, so a wrong type is one line naming the file and field, not a TypeError later.
 */
export function validateProcessShape(v: unknown, file: string): Process {
  validateConfig ??= loadValidator();
  const wrapped = { ociVersion: '1.0.0', process: v };
  if (!validateConfig(wrapped)) {
    const e = validateConfig.errors?.[0];
    throw e ? schemaError(wrapped, e, file) : new SpecError(file, 'does not match the OCI runtime-spec schema');
  }
  need(isObject(v) && Array.isArray(v.args) && v.args.length > 0, `${file}: process.args`, 'required: a non-empty array of strings');
  const nul = findNul(v, ['process']);
  if (nul) throw new SpecError(`${file}: ${jsonPath(nul)}`, `contains a NUL byte, which would end the string early in the kernel (got ${quoteValue(valueAt(wrapped, nul.map(String)))})`);
  return v as unknown as Process;
}

export interface Bundle {
  dir: string;
  spec: Spec;
  /** absolute host path of root.path */
  rootfs: string;
}

export function loadBundle(dir: string): Bundle {
  const path = join(dir, 'config.json');
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new UsageError(`--bundle ${dir}: cannot read ${path} (${describeError(e)})`, { cause: e });
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new SpecError('config.json', `invalid JSON in ${path}: ${(e as Error).message}`, { cause: e });
  }
  const spec = validateSpecShape(json);
  // absolute, whatever the bundle was named by: the init's cwd is tsrun's until it joins a
  // mount namespace by path, and setns(2) then moves it to that namespace's root
  const rootfs = isAbsolute(spec.root.path) ? spec.root.path : resolve(dir, spec.root.path);
  let st;
  try {
    st = statSync(rootfs);
  } catch (e) {
    throw new SpecError('config.json: root.path', `${rootfs}: ${describeError(e)}`, { cause: e });
  }
  if (!st.isDirectory()) throw new SpecError('config.json: root.path', `${rootfs}: ENOTDIR (not a directory)`);
  return { dir, spec, rootfs };
}
