import { childProcess } from '../builtins.js';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { TsrunError } from '../errors.js';
import { PROJECT_ROOT } from '../kernel/native.js';
import { canonicalName, parseReference } from './reference.js';
import type { ContentStore, ImageRecord } from './store.js';
import { importRootfsDir } from './import.js';
import { removeTree } from '../runtime/remove-tree.js';
import type { ImageConfig } from './types.js';

// The built-in images, built from the project's scripts and imported into the store like any
// directory the first time they are used, so they need no network:
//  - `busybox`: rootfs/build-busybox.sh, a root from the host's static busybox.
//    `tsrun pull busybox` replaces it with Docker Hub's.
//  - `probe`: rootfs/build-probe.sh, the busybox root plus the static probe (rootfs/probe.c,
//    built into build/probe by `npm install`) that prints what a container sees, and its
//    setuid and file-capability copies for the docs' demos.

export const BUILTIN = 'busybox';
export const BUILTIN_CONFIG: ImageConfig = { Cmd: ['sh'], Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'], WorkingDir: '/' };
export const PROBE_CONFIG: ImageConfig = { ...BUILTIN_CONFIG, Cmd: ['/probe', 'show'] };

const IMAGES: Record<string, { script: string; config: ImageConfig }> = {
  busybox: { script: 'build-busybox.sh', config: BUILTIN_CONFIG },
  probe: { script: 'build-probe.sh', config: PROBE_CONFIG },
};

/** The built-in image a reference names (busybox, probe, with or without :latest), if any. */
export function builtinName(ref: string): string | undefined {
  try {
    const c = canonicalName(parseReference(ref));
    return Object.keys(IMAGES).find((n) => canonicalName(parseReference(n)) === c);
  } catch {
    return undefined;
  }
}

export function isBuiltin(ref: string): boolean {
  return builtinName(ref) !== undefined;
}

/** Builds a built-in image's root with the project's script (into the store's tmp/). */
export function buildBuiltinRootfs(dest: string, name = BUILTIN): void {
  const script = join(PROJECT_ROOT, 'rootfs', IMAGES[name]!.script);
  try {
    childProcess().execFileSync('/bin/sh', [script, dest], { stdio: ['ignore', 'ignore', 'pipe'] });
  } catch (e) {
    const stderr = String((e as { stderr?: Buffer }).stderr ?? '').trim();
    throw new TsrunError(`cannot build the built-in ${name} image: ${stderr || (e as Error).message}`, { cause: e });
  }
}

/** Builds the busybox root with the project's script (into the store's tmp/). */
export function buildBusyboxRootfs(dest: string): void {
  buildBuiltinRootfs(dest, BUILTIN);
}

export async function importBuiltin(store: ContentStore, ref = BUILTIN): Promise<ImageRecord> {
  const name = builtinName(ref) ?? BUILTIN;
  const tmp = store.tmpPath(`${name}-rootfs`);
  mkdirSync(tmp, { mode: 0o755 });
  try {
    buildBuiltinRootfs(tmp, name);
    return await importRootfsDir(store, tmp, name, IMAGES[name]!.config, 'builtin');
  } finally {
    removeTree(tmp);
  }
}
