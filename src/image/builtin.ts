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

// The built-in `busybox` image: rootfs/build-busybox.sh makes a root filesystem from the
// host's static busybox, and it is imported into the store like any directory, so the first
// `tsrun run busybox` needs no network. `tsrun pull busybox` replaces it with Docker Hub's.

export const BUILTIN = 'busybox';
export const BUILTIN_CONFIG: ImageConfig = { Cmd: ['sh'], Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'], WorkingDir: '/' };

export function isBuiltin(ref: string): boolean {
  try {
    return canonicalName(parseReference(ref)) === canonicalName(parseReference(BUILTIN));
  } catch {
    return false;
  }
}

/** Builds the busybox root with the project's script (into the store's tmp/). */
export function buildBusyboxRootfs(dest: string): void {
  const script = join(PROJECT_ROOT, 'rootfs', 'build-busybox.sh');
  try {
    childProcess().execFileSync('/bin/sh', [script, dest], { stdio: ['ignore', 'ignore', 'pipe'] });
  } catch (e) {
    const stderr = String((e as { stderr?: Buffer }).stderr ?? '').trim();
    throw new TsrunError(`cannot build the built-in busybox image: ${stderr || (e as Error).message}`, { cause: e });
  }
}

export async function importBuiltin(store: ContentStore): Promise<ImageRecord> {
  const tmp = store.tmpPath('busybox-rootfs');
  mkdirSync(tmp, { mode: 0o755 });
  try {
    buildBusyboxRootfs(tmp);
    return await importRootfsDir(store, tmp, BUILTIN, BUILTIN_CONFIG, 'builtin');
  } finally {
    removeTree(tmp);
  }
}
