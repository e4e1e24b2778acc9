import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { mountSteps } from '../../src/controls/mounts.js';
import { control as processControl } from '../../src/controls/process.js';
import { UnsupportedError } from '../../src/errors.js';
import type { BuildContext } from '../../src/plan/types.js';
import type { Spec } from '../../src/spec/types.js';

// What bundles written by engines (podman, containerd) contain that tsrun's own specs do not.
// The real engines run in test/engines; these pin the planning decisions without root.

const rootfs = mkdtempSync(join(tmpdir(), 'tsrun-unit-rootfs-'));
mkdirSync(join(rootfs, 'tmp'));
mkdirSync(join(rootfs, 'run', 'lock'), { recursive: true });
writeFileSync(join(rootfs, 'run', 'lock', '.keep'), '');
afterAll(() => rmSync(rootfs, { recursive: true, force: true }));

function ctx(over: Partial<BuildContext> = {}): BuildContext {
  const spec = {
    ociVersion: '1.0.2',
    process: { args: ['sh'], cwd: '/', user: { uid: 1000, gid: 1000 }, env: [] },
    root: { path: rootfs },
    linux: { namespaces: [{ type: 'mount' }] },
  } as unknown as Spec;
  return { id: 'c', spec, rootfs, containerDir: '/var/lib/tsrun/containers/c', host: { capEff: 0n, lsms: [], ncpu: 2 }, terminal: false, waitStart: false, ...over } as BuildContext;
}

describe('bundles from engines', () => {
  const tmpfs = (destination: string) => ({ destination, type: 'tmpfs', source: 'tmpfs', options: ['rw', 'rprivate', 'nosuid', 'nodev', 'tmpcopyup'] });

  it('"tmpcopyup" (podman --read-only) over an empty or absent directory: a plain tmpfs, the option not passed to the kernel', () => {
    for (const d of ['/tmp', '/var/tmp']) {
      const mount = mountSteps(ctx(), tmpfs(d), 'mounts', 'x').find((s) => s.where === 'child' && s.op === 'MOUNT' && s.strs[2] === 'tmpfs');
      expect(mount).toBeDefined();
      expect(mount!.where === 'child' && mount!.strs[3]).toBe('');
    }
  });

  it('"tmpcopyup" over files in the rootfs is refused, naming them, rather than hiding them', () => {
    expect(() => mountSteps(ctx(), tmpfs('/run'), 'mounts', 'x')).toThrow(UnsupportedError);
    expect(() => mountSteps(ctx(), tmpfs('/run'), 'mounts', 'x')).toThrow(/mounts: "tmpcopyup" on \/run: the rootfs has 1 entry there \(lock\)/);
  });

  it('the start fifo is 0622: the init opens it after switching to a non-root process.user (podman run --user 1000)', () => {
    const steps = processControl.steps(ctx({ waitStart: true }));
    const fifo = steps.find((s) => s.where === 'parent' && s.action === 'mkfifo');
    expect(fifo).toMatchObject({ action: 'mkfifo', mode: 0o622 });
  });
});
