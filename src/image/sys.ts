import { createRequire } from 'node:module';
import { errnoName } from '../kernel/errno.js';
import { UnsupportedError } from '../errors.js';

// The libc calls Node's fs lacks and layer unpacking needs: mknod (overlay whiteouts are
// character devices 0:0, overlayfs(5) "Whiteouts and opaque directories"; FIFOs) and
// lsetxattr/lgetxattr/llistxattr (security.capability, trusted.overlay.opaque). The l-
// variants never follow a symlink. Loaded lazily through koffi (FFI): only unpacking needs
// it, so `run` start-up does not pay for it. A require of our own keeps the CLI bundle from
// inlining koffi's native module.

interface Libc {
  lsetxattr(path: string, name: string, value: Buffer, size: number, flags: number): number;
  lgetxattr(path: string, name: string, value: Buffer | null, size: number): number;
  llistxattr(path: string, list: Buffer | null, size: number): number;
  mknod(path: string, mode: number, dev: bigint): number;
}

let libc: Libc | undefined;
let errnoFn: () => number = () => 0;

function load(): Libc {
  if (libc) return libc;
  const req = createRequire(import.meta.url);
  let koffi: any;
  try {
    koffi = req('koffi');
  } catch (e) {
    throw new UnsupportedError(`unpacking image layers needs the koffi package (run npm install): ${(e as Error).message}`, { cause: e });
  }
  const lib = koffi.load('libc.so.6');
  libc = {
    lsetxattr: lib.func('int lsetxattr(const char *path, const char *name, const void *value, size_t size, int flags)'),
    lgetxattr: lib.func('long lgetxattr(const char *path, const char *name, _Out_ void *value, size_t size)'),
    llistxattr: lib.func('long llistxattr(const char *path, _Out_ char *list, size_t size)'),
    mknod: lib.func('int mknod(const char *path, uint32_t mode, uint64_t dev)'),
  };
  errnoFn = () => koffi.errno() as number;
  return libc;
}

/** A failed libc call, shaped like Node's fs errors (code = errno name). */
export class SysError extends Error {
  readonly code: string;
  constructor(
    readonly syscall: string,
    readonly path: string,
    readonly errno: number,
  ) {
    super(`${syscall} ${path}: ${errnoName(errno)}`);
    this.code = errnoName(errno);
  }
}

function check(r: number, call: string, path: string): number {
  if (r < 0) throw new SysError(call, path, errnoFn());
  return r;
}

export const S_IFCHR = 0o020000;
export const S_IFIFO = 0o010000;

export function mknod(path: string, mode: number, major = 0, minor = 0): void {
  // glibc's makedev layout
  const dev = (BigInt(major & 0xfff) << 8n) | BigInt(minor & 0xff) | (BigInt(minor & ~0xff) << 12n) | (BigInt(major & ~0xfff) << 32n);
  check(load().mknod(path, mode, dev), 'mknod', path);
}

export function lsetxattr(path: string, name: string, value: Buffer): void {
  check(load().lsetxattr(path, name, value, value.length, 0), 'lsetxattr', path);
}

export function lgetxattr(path: string, name: string): Buffer | undefined {
  const l = load();
  const n = l.lgetxattr(path, name, null, 0);
  if (n < 0) {
    const e = errnoFn();
    if (errnoName(e) === 'ENODATA') return undefined;
    throw new SysError('lgetxattr', path, e);
  }
  const buf = Buffer.alloc(n);
  check(l.lgetxattr(path, name, buf, n), 'lgetxattr', path);
  return buf;
}

export function llistxattr(path: string): string[] {
  const l = load();
  const n = check(l.llistxattr(path, null, 0), 'llistxattr', path);
  if (n === 0) return [];
  const buf = Buffer.alloc(n);
  const m = check(l.llistxattr(path, buf, n), 'llistxattr', path);
  return buf.subarray(0, m).toString('utf8').split('\0').filter(Boolean);
}
