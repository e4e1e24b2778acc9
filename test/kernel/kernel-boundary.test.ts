// The calls of layer unpacking on the typed kernel boundary (src/kernel/types.ts), through the
// addon: what the kernel does with them, and their failures reported as every addon call
// reports one (errno + syscall, named by errnoOf), which unpack and import print by name.
import { constants, lstatSync, mkdtempSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { errnoOf } from '../../src/kernel/errno.js';
import { nativeKernel as kernel } from '../../src/kernel/native.js';
import { describeKernel } from './helpers.js';

/** The error a call threw, as callers see it: the errno's name and the addon's syscall text. */
function failure(call: () => unknown): { name: string; syscall: string; message: string } {
  try {
    call();
  } catch (e) {
    const x = e as { syscall?: string; message: string };
    return { name: errnoOf(e)?.name ?? 'none', syscall: x.syscall ?? '', message: x.message };
  }
  throw new Error('the call did not fail');
}

describeKernel('kernel boundary: mknod and the l*xattr calls', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'tsrun-kboundary-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('mknod makes whiteouts (char 0:0), FIFOs with their mode, and a device number as makedev(3) packs it', () => {
    kernel.mknod(join(dir, 'wh'), constants.S_IFCHR, 0, 0);
    const wh = lstatSync(join(dir, 'wh'));
    expect([wh.isCharacterDevice(), wh.rdev]).toEqual([true, 0]);
    const old = process.umask(0);
    try {
      kernel.mknod(join(dir, 'fifo'), constants.S_IFIFO | 0o640, 0, 0);
    } finally {
      process.umask(old);
    }
    const f = lstatSync(join(dir, 'fifo'));
    expect([f.isFIFO(), f.mode & 0o7777]).toEqual([true, 0o640]);
    // a minor above 0xff is split around the major in the dev_t (makedev(3)); the kernel
    // takes majors below 4096 and minors below 2^20
    kernel.mknod(join(dir, 'dev'), constants.S_IFCHR | 0o600, 0x123, 0x45678);
    const rdev = BigInt(lstatSync(join(dir, 'dev'), { bigint: true }).rdev);
    const major = ((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn);
    const minor = (rdev & 0xffn) | ((rdev >> 12n) & ~0xffn);
    expect([major, minor]).toEqual([0x123n, 0x45678n]);
  });

  it('mknod on an existing path, or under a missing directory, fails with EEXIST / ENOENT by name, naming the path', () => {
    writeFileSync(join(dir, 'taken'), '');
    const e = failure(() => kernel.mknod(join(dir, 'taken'), constants.S_IFCHR, 0, 0));
    expect(e.name).toBe('EEXIST');
    expect(e.syscall).toBe(`mknod ${join(dir, 'taken')}`);
    expect(statSync(join(dir, 'taken')).isFile()).toBe(true);
    expect(failure(() => kernel.mknod(join(dir, 'no/such'), constants.S_IFIFO | 0o644, 0, 0)).name).toBe('ENOENT');
  });

  it('xattrs: set, list and read back; an absent one is null; values and lists past one page read whole', () => {
    const f = join(dir, 'x');
    writeFileSync(f, '');
    kernel.lsetxattr(f, 'user.small', Buffer.from('y'));
    kernel.lsetxattr(f, 'trusted.t', new Uint8Array([0, 1, 2])); // a plain Uint8Array, not only a Buffer
    const big = Buffer.alloc(1500, 'v'); // larger than the addon's first buffer
    kernel.lsetxattr(f, 'user.big', big);
    expect(kernel.lgetxattr(f, 'user.small')).toEqual(Buffer.from('y'));
    expect(kernel.lgetxattr(f, 'trusted.t')).toEqual(Buffer.from([0, 1, 2]));
    expect(kernel.lgetxattr(f, 'user.big')).toEqual(big);
    expect(kernel.lgetxattr(f, 'user.absent')).toBeNull();
    kernel.lsetxattr(f, 'user.empty', Buffer.alloc(0));
    expect(kernel.lgetxattr(f, 'user.empty')).toEqual(Buffer.alloc(0));
    expect(kernel.llistxattr(f).sort()).toEqual(['trusted.t', 'user.big', 'user.empty', 'user.small']);
    const g = join(dir, 'names');
    writeFileSync(g, '');
    const many = Array.from({ length: 50 }, (_, i) => `user.${'n'.repeat(20)}${i}`); // a list of ~1.4 kB
    for (const n of many) kernel.lsetxattr(g, n, Buffer.from('1'));
    expect(kernel.llistxattr(g).sort()).toEqual(many.sort());
  });

  it('the l- calls act on a symlink itself, never on its target', () => {
    const target = join(dir, 'target');
    writeFileSync(target, '');
    kernel.lsetxattr(target, 'user.on-target', Buffer.from('t'));
    symlinkSync(target, join(dir, 'link'));
    expect(kernel.llistxattr(join(dir, 'link'))).toEqual([]);
    expect(kernel.lgetxattr(join(dir, 'link'), 'user.on-target')).toBeNull();
    // xattr(7): user.* attributes are not permitted on symlinks; trusted.* are, on the link
    expect(failure(() => kernel.lsetxattr(join(dir, 'link'), 'user.x', Buffer.from('x'))).name).toBe('EPERM');
    kernel.lsetxattr(join(dir, 'link'), 'trusted.on-link', Buffer.from('l'));
    expect(kernel.llistxattr(join(dir, 'link'))).toEqual(['trusted.on-link']);
    expect(kernel.llistxattr(target)).toEqual(['user.on-target']);
    // a dangling symlink is a file of its own too
    symlinkSync('/nonexistent', join(dir, 'dangling'));
    expect(kernel.llistxattr(join(dir, 'dangling'))).toEqual([]);
  });

  it('xattr failures are named: a missing file ENOENT, an unknown namespace ENOTSUP, with the attribute and the path', () => {
    const missing = join(dir, 'missing');
    const g = failure(() => kernel.lgetxattr(missing, 'user.a'));
    expect([g.name, g.syscall]).toEqual(['ENOENT', `lgetxattr user.a ${missing}`]);
    expect(failure(() => kernel.llistxattr(missing)).name).toBe('ENOENT');
    writeFileSync(join(dir, 'y'), '');
    const s = failure(() => kernel.lsetxattr(join(dir, 'y'), 'bogus.name', Buffer.from('x')));
    expect(s.name).toBe('ENOTSUP'); // setxattr(2)'s name; EOPNOTSUPP is the same number on Linux
    expect(s.message).toContain(`lsetxattr bogus.name ${join(dir, 'y')}`);
  });
});
