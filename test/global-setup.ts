import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestProject } from 'vitest/node';
import { BUILTIN_CONFIG, PROBE_CONFIG } from '../src/image/builtin.js';
import { importRootfsDir } from '../src/image/import.js';
import { ContentStore } from '../src/image/store.js';

// Kernel tests run tsrun (bin/tsrun → dist/, built by `pretest`) against their own state
// and data directories, with an image `probe` = the built-in busybox root plus the static
// probe (rootfs/probe.c) at /probe. Unit tests need none of it.

const ROOT = join(import.meta.dirname, '..');

declare module 'vitest' {
  export interface ProvidedContext {
    tsrunEnv: {
      base: string;
      data: string;
      root: string;
      probe: string;
      /** the source directories of the busybox and probe images (copy them for bundles) */
      rootfs: { busybox: string; probe: string };
      /** the busybox image's unpacked layer in the store (an overlay lower dir) */
      layers: { busybox: string };
    } | null;
  }
}

export default async function setup(project: TestProject): Promise<() => void> {
  if (process.getuid?.() !== 0) {
    project.provide('tsrunEnv', null);
    return () => {};
  }
  const base = mkdtempSync(join(tmpdir(), 'tsrun-test-'));
  const data = join(base, 'data');
  const root = join(base, 'run');
  mkdirSync(data, { recursive: true });
  const cache = join(ROOT, 'test', '.cache');
  mkdirSync(cache, { recursive: true });
  const probe = join(cache, 'probe');
  execFileSync('gcc', ['-static', '-O2', '-Wall', '-o', probe, join(ROOT, 'rootfs', 'probe.c')], { stdio: 'inherit' });

  // The images go through the store's own import (src/image/import.ts), as `tsrun import`
  // does: `busybox` is the built-in root, `probe` the same root with /probe added. Their
  // source directories stay in <base>/rootfs for tests that build bundles from them.
  const rootfs = { busybox: join(base, 'rootfs', 'busybox'), probe: join(base, 'rootfs', 'probe') };
  execFileSync('/bin/sh', [join(ROOT, 'rootfs', 'build-busybox.sh'), rootfs.busybox]);
  // the built-in probe image's script, with the probe just compiled (build-probe.sh)
  execFileSync('/bin/sh', [join(ROOT, 'rootfs', 'build-probe.sh'), rootfs.probe, probe]);
  const store = new ContentStore(join(data, 'images'));
  const bb = await importRootfsDir(store, rootfs.busybox, 'busybox', BUILTIN_CONFIG, 'builtin');
  await importRootfsDir(store, rootfs.probe, 'probe', { ...PROBE_CONFIG, Cmd: ['/probe', 'info'] });
  const layers = { busybox: store.layerDir(bb.layers[0]!.diffId) };
  project.provide('tsrunEnv', { base, data, root, probe, rootfs, layers });

  return () => {
    // Only remove the directory when nothing is mounted below it: a leak must stay visible.
    const mounted = readFileSync('/proc/self/mountinfo', 'utf8').includes(base);
    if (!mounted && existsSync(base)) rmSync(base, { recursive: true, force: true });
  };
}
