import { execFileSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestProject } from 'vitest/node';

// Kernel tests run tsrun (bin/tsrun → dist/, built by `pretest`) against their own state
// and data directories, with an image `probe` = the built-in busybox root plus the static
// probe (rootfs/probe.c) at /probe. Unit tests need none of it.

const ROOT = join(import.meta.dirname, '..');

declare module 'vitest' {
  export interface ProvidedContext {
    tsrunEnv: { base: string; data: string; root: string; probe: string } | null;
  }
}

export default function setup(project: TestProject): () => void {
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

  // the probe image: a copy of the built-in busybox root with /probe added
  const images = join(data, 'images');
  const busybox = join(images, 'busybox', 'rootfs');
  execFileSync('/bin/sh', [join(ROOT, 'rootfs', 'build-busybox.sh'), busybox]);
  execFileSync('/bin/sh', ['-c', `printf '%s' '${JSON.stringify({ Cmd: ['sh'], WorkingDir: '/' })}' > ${join(images, 'busybox', 'config.json')}`]);
  const pr = join(images, 'probe', 'rootfs');
  mkdirSync(join(images, 'probe'), { recursive: true });
  cpSync(busybox, pr, { recursive: true, verbatimSymlinks: true });
  cpSync(probe, join(pr, 'probe'));
  execFileSync('/bin/sh', ['-c', `printf '%s' '${JSON.stringify({ Cmd: ['/probe', 'info'], WorkingDir: '/' })}' > ${join(images, 'probe', 'config.json')}`]);
  project.provide('tsrunEnv', { base, data, root, probe });

  return () => {
    // Only remove the directory when nothing is mounted below it: a leak must stay visible.
    const mounted = readFileSync('/proc/self/mountinfo', 'utf8').includes(base);
    if (!mounted && existsSync(base)) rmSync(base, { recursive: true, force: true });
  };
}
