import { createHash } from 'node:crypto';
import { closeSync, constants, createReadStream, fchmodSync, fchownSync, futimesSync, lchownSync, linkSync, lstatSync, lutimesSync, mkdirSync, openSync, readSync, symlinkSync, chmodSync, unlinkSync, writeSync, type Stats } from 'node:fs';
import { posix } from 'node:path';
import type { Readable } from 'node:stream';
import { childProcess, stream, zlib } from '../builtins.js';
import { TsrunError, UnsupportedError } from '../errors.js';
import { ChunkReader, readTar, TarError, type TarEntry } from './tar.js';
import { describeError, errnoOf } from '../kernel/errno.js';
import { quoteValue } from '../spec/quote.js';
import { nativeKernel } from '../kernel/native.js';
import type { Kernel } from '../kernel/types.js';
import { removeTree } from '../runtime/remove-tree.js';

const O_DIR = constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW;
/** bytes: a longer path goes through an fd of its parent (PATH_MAX is 4096 with the NUL) */
const LONG_PATH = 3072;

// Applies one image layer (a tar, maybe compressed) into an empty directory of its own: the
// layer becomes one overlayfs lower dir. The tar is untrusted input (CVE-2018-15664-style
// symlink races, CVE-2019-14271, the "tar slip" family), so:
//  - every path is made relative and may not contain '..' or start at '/';
//  - each parent directory is checked with lstat to be a real directory of this layer, never
//    a symlink, before anything is created under it; the final component is created with
//    O_EXCL|O_NOFOLLOW after removing what was there, so no symlink is ever followed;
//  - a hard link must name an entry already in this layer, a symlink's relative target may
//    not climb above the layer's root, device nodes are refused (the runtime makes /dev);
//  - `.wh.NAME` becomes an overlay whiteout (char 0:0) and `.wh..wh..opq` sets
//    trusted.overlay.opaque=y (the OCI image spec's "whiteouts" → overlayfs(5));
//  - trusted.overlay.* and user.overlay.* xattrs from the image are refused (they steer
//    overlayfs itself: redirects, metacopy, opaque);
//  - ownership, setuid/setgid/sticky bits, mtimes and xattrs (security.capability) are kept.
// Each layer lives in its own directory, so a symlink planted by a lower layer is not even
// present where a later layer writes: the later layer's directory wins in the overlay.

export class LayerError extends TsrunError {}

export type Compression = 'gzip' | 'zstd' | 'none';

export function sniffCompression(path: string): Compression {
  const fd = openSync(path, 'r');
  try {
    const b = Buffer.alloc(4);
    const n = readSync(fd, b, 0, 4, 0);
    if (n >= 2 && b[0] === 0x1f && b[1] === 0x8b) return 'gzip';
    if (n >= 4 && b.readUInt32LE(0) === 0xfd2fb528) return 'zstd';
    return 'none';
  } finally {
    closeSync(fd);
  }
}

function decompressed(path: string, c: Compression): AsyncIterable<Buffer> {
  const src = createReadStream(path, { highWaterMark: 1 << 16 });
  if (c === 'none') return src;
  if (c === 'gzip') return src.pipe(zlib().createGunzip({ chunkSize: 1 << 16 }));
  // node >= 22.15 has zstd in zlib; else the zstd program, if installed
  const z = (zlib as unknown as { createZstdDecompress?: () => NodeJS.ReadWriteStream }).createZstdDecompress;
  if (z) return src.pipe(z()) as unknown as AsyncIterable<Buffer>;
  const p = childProcess().spawn('zstd', ['-dc'], { stdio: ['pipe', 'pipe', 'pipe'] });
  let missing: Error | undefined;
  p.on('error', (e) => (missing = e));
  src.pipe(p.stdin);
  return (async function* () {
    try {
      for await (const b of p.stdout) yield b as Buffer;
    } finally {
      if (missing) throw new UnsupportedError(`zstd-compressed layer: this Node (${process.version}) has no zstd and the zstd program is not installed (apt-get install zstd)`);
    }
  })();
}

/** Normalises an entry name to a relative path inside the layer, or refuses it. */
export function safeRelPath(name: string, what = 'path'): string {
  if (name.includes('\0')) throw new Error(`${what} contains a NUL byte`);
  if (name.startsWith('/')) throw new Error(`${what} is absolute`);
  const parts = name.split('/').filter((p) => p !== '' && p !== '.');
  if (parts.includes('..')) throw new Error(`${what} contains '..'`);
  return parts.join('/');
}

export interface UnpackStats {
  diffId: string;
  entries: number;
  /** bytes of the uncompressed tar */
  bytes: number;
  /** bytes the layer holds on disk as docker's image SIZE counts them: regular files, and symlinks (their target's length); a hard link adds nothing */
  size: number;
}

/**
 * Unpacks the layer at `blob` into `dest` (an empty directory) and returns the sha256 of
 * the uncompressed tar (the diff_id the image config must list).
 */
export async function unpackLayer(blob: string, dest: string, label = blob, kernel: Kernel = nativeKernel): Promise<UnpackStats> {
  const hash = createHash('sha256');
  const reader = new ChunkReader(decompressed(blob, sniffCompression(blob)), hash);
  const dirs = new Set<string>(['']); // relative paths checked to be real directories of this layer
  const dirMeta: { rel: string; e: TarEntry }[] = [];
  // Deep layers: past PATH_MAX (4096 bytes) no syscall takes the whole path, so a long path
  // is used as /proc/self/fd/N/NAME, N an fd of its parent directory, opened a few
  // components at a time from the deepest directory already open. Every component on the
  // way was checked by parents() to be a real directory of this layer (never a symlink),
  // and this unpack directory is private to the store.
  const fds = new Map<string, number>(); // parent dir (relative) → fd, least recently used first
  const dirFd = (rel: string): number => {
    const hit = fds.get(rel);
    if (hit !== undefined) {
      fds.delete(rel);
      fds.set(rel, hit);
      return hit;
    }
    let from = '';
    for (const r of fds.keys()) if (rel.startsWith(`${r}/`) && r.length > from.length) from = r;
    let fd = from ? fds.get(from)! : openSync(dest, O_DIR);
    let owned = !from;
    const rest = rel.slice(from ? from.length + 1 : 0).split('/');
    for (let i = 0; i < rest.length; ) {
      let chunk = rest[i++]!;
      while (i < rest.length && Buffer.byteLength(chunk) + Buffer.byteLength(rest[i]!) < LONG_PATH) chunk += `/${rest[i++]}`;
      const next = openSync(`/proc/self/fd/${fd}/${chunk}`, O_DIR);
      if (owned) closeSync(fd);
      fd = next;
      owned = true;
    }
    fds.set(rel, fd);
    if (fds.size > 4) {
      const [k, v] = fds.entries().next().value as [string, number];
      closeSync(v);
      fds.delete(k);
    }
    return fd;
  };
  /** forgets open directories at or below rel (it is being removed or replaced) */
  const forget = (rel: string) => {
    for (const [k, v] of [...fds]) if (k === rel || k.startsWith(`${rel}/`)) (closeSync(v), fds.delete(k));
  };
  const abs = (rel: string): string => {
    const full = rel ? `${dest}/${rel}` : dest;
    const slash = rel.lastIndexOf('/');
    if (slash < 0 || Buffer.byteLength(full) < LONG_PATH) return full;
    return `/proc/self/fd/${dirFd(rel.slice(0, slash))}/${rel.slice(slash + 1)}`;
  };
  let entries = 0;
  let size = 0;
  let current = '';
  const fail = (msg: string): never => {
    throw new LayerError(`layer ${label}: entry ${JSON.stringify(current)}: ${msg}; nothing was unpacked`);
  };
  const lst = (rel: string): Stats | undefined => {
    try {
      return lstatSync(abs(rel));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw e;
    }
  };
  /** every parent of rel must be a real directory here; missing ones are made (root, 0755) */
  const parents = (rel: string) => {
    // a directory in `dirs` had all its parents checked already: one lookup, not one per level
    const slash = rel.lastIndexOf('/');
    if (slash < 0 || dirs.has(rel.slice(0, slash))) return;
    const parts = rel.split('/');
    let p = '';
    for (let i = 0; i < parts.length - 1; i++) {
      p = p ? `${p}/${parts[i]}` : parts[i]!;
      if (dirs.has(p)) continue;
      const st = lst(p);
      if (!st) mkdirSync(abs(p), { mode: 0o755 });
      else if (st.isSymbolicLink()) fail(`its parent ${JSON.stringify(p)} is a symlink in this layer: writing through it could leave the layer`);
      else if (!st.isDirectory()) fail(`its parent ${JSON.stringify(p)} is not a directory`);
      dirs.add(p);
    }
  };
  const remove = (rel: string, keepDir: boolean): 'dir' | 'none' => {
    const st = lst(rel);
    if (!st) return 'none';
    if (st.isDirectory() && !st.isSymbolicLink()) {
      if (keepDir) return 'dir';
      removeTree(abs(rel));
      forget(rel);
      for (const d of dirs) if (d === rel || d.startsWith(`${rel}/`)) dirs.delete(d);
      return 'none';
    }
    unlinkSync(abs(rel));
    return 'none';
  };
  try {
    for await (const e of readTar(reader)) {
      entries++;
      current = e.name;
      let rel: string;
      try {
        rel = safeRelPath(e.name);
      } catch (err) {
        return fail(`${(err as Error).message}: it would leave the layer`);
      }
      if (rel === '') continue; // "./": the layer root itself
      for (const x of Object.keys(e.xattrs)) if (x.startsWith('trusted.overlay.') || x.startsWith('user.overlay.')) fail(`xattr ${x} is overlayfs's own and may not come from an image`);
      parents(rel);
      const base = posix.basename(rel);
      const parent = posix.dirname(rel) === '.' ? '' : posix.dirname(rel);
      if (base === '.wh..wh..opq') {
        // trusted.* for overlay mounted by host root; user.* for one mounted in a user
        // namespace with `userxattr` (--userns-remap), which cannot read trusted.*
        kernel.lsetxattr(abs(parent), 'trusted.overlay.opaque', Buffer.from('y'));
        kernel.lsetxattr(abs(parent), 'user.overlay.opaque', Buffer.from('y'));
        continue;
      }
      if (base.startsWith('.wh.')) {
        const target = base.slice(4);
        if (!target || target === '.' || target === '..' || target.startsWith('.wh.')) fail('malformed whiteout name');
        const t = parent ? `${parent}/${target}` : target;
        remove(t, false);
        kernel.mknod(abs(t), constants.S_IFCHR | 0o000, 0, 0);
        continue;
      }
      const p = abs(rel);
      switch (e.type) {
        case 'dir': {
          if (remove(rel, true) !== 'dir') mkdirSync(p, { mode: 0o700 });
          dirs.add(rel);
          dirMeta.push({ rel, e });
          lchownSync(p, e.uid, e.gid);
          chmodSync(p, e.mode); // a real directory, checked above: chmod cannot follow anything
          break;
        }
        case 'file': {
          remove(rel, false);
          size += e.size;
          const fd = openSync(p, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
          try {
            for await (const b of e.body()) writeSync(fd, b);
            fchownSync(fd, e.uid, e.gid);
            fchmodSync(fd, e.mode); // after chown, which clears setuid/setgid
            futimesSync(fd, e.mtime, e.mtime);
          } finally {
            closeSync(fd);
          }
          break;
        }
        case 'symlink': {
          if (!e.linkname || e.linkname.includes('\0')) fail('empty symlink target');
          if (!e.linkname.startsWith('/')) {
            const resolved = posix.normalize(posix.join(parent || '.', e.linkname));
            if (resolved === '..' || resolved.startsWith('../')) fail(`symlink to ${JSON.stringify(e.linkname)} points outside the layer`);
          }
          remove(rel, false);
          symlinkSync(e.linkname, p);
          size += Buffer.byteLength(e.linkname);
          lchownSync(p, e.uid, e.gid);
          lutimesSync(p, e.mtime, e.mtime);
          break;
        }
        case 'hardlink': {
          let target: string;
          try {
            target = safeRelPath(e.linkname, 'hard link target');
          } catch (err) {
            return fail(`${(err as Error).message}: it points outside the layer`);
          }
          parents(target === '' ? 'x' : target);
          const st = target === '' ? undefined : lst(target);
          if (!st) fail(`hard link to ${JSON.stringify(e.linkname)}, which is not in this layer`);
          if (st!.isDirectory()) fail(`hard link to directory ${JSON.stringify(e.linkname)}`);
          if (target === rel) break;
          remove(rel, false);
          linkSync(abs(target), p); // link(2) does not follow a symlink at the target
          break;
        }
        case 'fifo': {
          remove(rel, false);
          kernel.mknod(p, constants.S_IFIFO | e.mode, 0, 0);
          lchownSync(p, e.uid, e.gid);
          break;
        }
        case 'char':
        case 'block':
          fail(`${e.type} device ${e.devmajor}:${e.devminor}: device nodes are refused in images (the runtime creates /dev)`);
      }
      for (const [k, v] of Object.entries(e.xattrs)) kernel.lsetxattr(p, k, v);
    }
    // directory times last: creating their entries changed them
    for (const { rel, e } of dirMeta.reverse()) lutimesSync(abs(rel), e.mtime, e.mtime);
  } catch (err) {
    if (err instanceof LayerError) throw err;
    if (err instanceof TarError || err instanceof UnsupportedError) throw new LayerError(`layer ${label}: ${err.message}`, { cause: err });
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'Z_DATA_ERROR' || code === 'Z_BUF_ERROR' || code?.startsWith?.('ERR_')) throw new LayerError(`layer ${label}: cannot decompress: ${(err as Error).message}`, { cause: err });
    // e.g. ENOSPC: name the directory being filled, so the full file system is obvious
    const why = errnoOf(err) ? describeError(err) : `${code ?? ''} ${(err as Error).message}`.trim();
    throw new LayerError(`layer ${label}: entry ${quoteValue(current)} into ${dest}: ${why}`, { cause: err });
  } finally {
    for (const v of fds.values()) closeSync(v);
    fds.clear();
  }
  return { diffId: `sha256:${hash.digest('hex')}`, entries, bytes: reader.total, size };
}

/** For tests and `import` of a tar from a stream rather than a file. */
export function bufferStream(b: Buffer): Readable {
  return stream().Readable.from([b]);
}
