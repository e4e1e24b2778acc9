import { describe, expect, it } from 'vitest';
import { KernelError, UsageError } from '../../src/errors.js';
import { containerFileReader, imageFileReader } from '../../src/kernel/in-root.js';
import type { Kernel } from '../../src/kernel/types.js';
import { lookupUser } from '../../src/spec/users.js';

// How tsrun turns what the addon's readFileInRoot reports into the image's view of a file:
// the layer logic and the messages, with a fake kernel (the kernel itself is tested in
// test/kernel/host-access.test.ts).

type Entry = string | { errno: number; fileType?: string; rdev?: number; detail?: string; walk?: boolean };

/** a fake addon: files[root][path]; a missing path is ENOENT, as openat2 says it */
function fake(files: Record<string, Record<string, Entry>>, calls: string[] = []): Kernel {
  const err = (syscall: string, errno: number, extra: object = {}) => Object.assign(new Error(`${syscall}: boom`), { syscall, errno, ...extra });
  return {
    readFileInRoot(root: string, path: string) {
      calls.push(`${root}:${path}`);
      const layer = files[root];
      if (!layer) throw err(`open root ${root}`, 2);
      const e = layer[path];
      if (e === undefined) throw err(`openat2 ${path}`, 2);
      if (typeof e === 'string') return Buffer.from(e);
      throw err(e.fileType || e.walk ? `openat2 ${path}` : `read ${path}`, e.errno, e.walk ? {} : e);
    },
  } as unknown as Kernel;
}

describe('imageFileReader: the top layer that has the path decides, as overlayfs does', () => {
  it('reads the topmost layer that has the file, asking only down to it', () => {
    const calls: string[] = [];
    const k = fake({ l0: { '/etc/passwd': 'low' }, l1: { '/etc/passwd': 'mid' }, l2: {} }, calls);
    expect(imageFileReader(['l0', 'l1', 'l2'], 100, k)('/etc/passwd')).toBe('mid');
    expect(calls).toEqual(['l2:/etc/passwd', 'l1:/etc/passwd']);
  });

  it('a whiteout (character device 0:0) or a non-directory parent hides the lower layers', () => {
    const wh = { errno: 22, fileType: 'character device', rdev: 0, detail: 'not a regular file: character device' };
    expect(imageFileReader(['l0', 'l1'], 100, fake({ l0: { '/etc/passwd': 'low' }, l1: { '/etc/passwd': wh } }))('/etc/passwd')).toBeUndefined();
    // ENOTDIR from the walk: /etc is a file (or a whiteout) in l1
    expect(imageFileReader(['l0', 'l1'], 100, fake({ l0: { '/etc/passwd': 'low' }, l1: { '/etc/passwd': { errno: 20, walk: true } } }))('/etc/passwd')).toBeUndefined();
  });

  it('anything else that is not a regular file, or too large, is an error naming the path and the errno', () => {
    const fifo = fake({ l0: { '/etc/group': { errno: 22, fileType: 'fifo', detail: 'not a regular file: fifo' } } });
    expect(() => imageFileReader(['l0'], 100, fifo)('/etc/group')).toThrow(new KernelError('/etc/group', 22, 'EINVAL', 'not a regular file: fifo'));
    const big = fake({ l0: { '/etc/group': { errno: 27, detail: '5000000 bytes, more than 4194304' } } });
    expect(() => imageFileReader(['l0'], 100, big)('/etc/group')).toThrow('/etc/group: EFBIG (5000000 bytes, more than 4194304)');
    const loop = fake({ l0: { '/etc/group': { errno: 40 } } });
    expect(() => imageFileReader(['l0'], 100, loop)('/etc/group')).toThrow(/^\/etc\/group: ELOOP/);
  });

  it('a container file is read inside /proc/<pid>/root; a root that is gone is an error, not an absent file', () => {
    const calls: string[] = [];
    expect(containerFileReader(42, 100, fake({ '/proc/42/root': { '/etc/passwd': 'x' } }, calls))('/etc/passwd')).toBe('x');
    expect(calls).toEqual(['/proc/42/root:/etc/passwd']);
    expect(() => containerFileReader(43, 100, fake({}))('/etc/passwd')).toThrow(/^open \/proc\/43\/root: ENOENT/);
  });
});

describe('lookupUser: unreadable files are errors naming the flag, the file and the errno', () => {
  it('prefixes the flag and whose file it is', () => {
    const read = (p: string) => {
      if (p === '/etc/group') throw new KernelError('/etc/group', 22, 'EINVAL', 'not a regular file: fifo');
      return 'alice:x:1000:1000::/home/alice:/bin/sh\n';
    };
    expect(() => lookupUser('alice', read, '--user', "the container's")).toThrow(new UsageError(`--user "alice": the container's /etc/group: EINVAL (not a regular file: fifo)`));
    expect(lookupUser('alice', (p) => (p === '/etc/passwd' ? 'alice:x:1000:1001::/home/alice:/bin/sh\n' : undefined))).toMatchObject({ uid: 1000, gid: 1001, home: '/home/alice' });
  });
});
