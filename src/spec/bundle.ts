import { readFileSync, statSync } from 'node:fs';
import { isAbsolute, join } from 'node:path';
import { SpecError, UsageError } from '../errors.js';
import { describeError } from '../kernel/errno.js';
import type { Spec } from './types.js';

// An OCI bundle: a directory with config.json and (usually) the rootfs it names.

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function need(cond: unknown, field: string, msg: string): asserts cond {
  if (!cond) throw new SpecError(field, msg);
}

/** Structural checks of config.json, each naming the field; controls check the rest. */
export function validateSpecShape(v: unknown): Spec {
  need(isObject(v), 'config.json', 'must be a JSON object');
  need(typeof v.ociVersion === 'string', 'ociVersion', 'required (a string such as "1.2.0")');
  need(/^1\./.test(v.ociVersion as string), 'ociVersion', `unsupported version ${JSON.stringify(v.ociVersion)} (tsrun speaks 1.x)`);
  need(isObject(v.process), 'process', 'required (tsrun runs a process)');
  const p = v.process as Record<string, unknown>;
  need(Array.isArray(p.args) && p.args.length > 0, 'process.args', 'required: a non-empty array of strings');
  need(typeof p.cwd === 'string', 'process.cwd', 'required: an absolute path');
  need(isObject(p.user), 'process.user', 'required: {"uid": N, "gid": N}');
  need(isObject(v.root), 'root', 'required: {"path": "rootfs"}');
  need(typeof (v.root as Record<string, unknown>).path === 'string', 'root.path', 'required: the root filesystem directory');
  need(isObject(v.linux), 'linux', 'required on Linux');
  const l = v.linux as Record<string, unknown>;
  // config-linux.md: "If a namespace type is not specified in the namespaces array, the
  // container MUST inherit the runtime namespace of that type" — a missing list is all of them
  if (l.namespaces === undefined) l.namespaces = [];
  need(Array.isArray(l.namespaces), 'linux.namespaces', 'must be an array of {"type": ...}');
  if (v.mounts !== undefined) need(Array.isArray(v.mounts), 'mounts', 'must be an array');
  if (v.hooks !== undefined && isObject(v.hooks) && Object.values(v.hooks).some((h) => Array.isArray(h) && h.length)) {
    throw new SpecError('hooks', 'OCI hooks are not supported by tsrun');
  }
  return v as unknown as Spec;
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
  const rootfs = isAbsolute(spec.root.path) ? spec.root.path : join(dir, spec.root.path);
  let st;
  try {
    st = statSync(rootfs);
  } catch (e) {
    throw new SpecError('root.path', `${rootfs}: ${describeError(e)}`, { cause: e });
  }
  if (!st.isDirectory()) throw new SpecError('root.path', `${rootfs}: ENOTDIR (not a directory)`);
  return { dir, spec, rootfs };
}
