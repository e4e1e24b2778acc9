import { createHash, type Hash } from 'node:crypto';
import { closeSync, constants, fstatSync, lstatSync, openSync, readdirSync, readlinkSync, readSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { TsrunError } from '../errors.js';
import { errnoOf } from '../kernel/errno.js';
import { nativeKernel } from '../kernel/native.js';
import type { Kernel } from '../kernel/types.js';
import { paced } from './gc-pace.js';

// A small tar reader and writer (POSIX ustar + pax extended headers + the GNU long-name
// records that docker's and Go's archive/tar emit). Why not an npm tar library: the unpacker
// must decide every filesystem call itself (no symlink ever followed, whiteouts turned into
// overlay devices, xattrs set with l*xattr, nothing created before the entry is judged), so
// all we need from a library is header parsing, and that is 150 lines we can read whole.

export type EntryType = 'file' | 'hardlink' | 'symlink' | 'char' | 'block' | 'dir' | 'fifo';

export interface TarEntry {
  name: string;
  type: EntryType;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtime: number;
  linkname: string;
  devmajor: number;
  devminor: number;
  xattrs: Record<string, Buffer>;
}

export class TarError extends TsrunError {}

const O_DIR = constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW;

const TYPES: Record<string, EntryType> = { '0': 'file', '\0': 'file', '7': 'file', '1': 'hardlink', '2': 'symlink', '3': 'char', '4': 'block', '5': 'dir', '6': 'fifo' };

/** Pulls exact byte counts out of a stream of chunks, hashing everything it pulls. */
export class ChunkReader {
  private readonly it: AsyncIterator<Buffer>;
  private bufs: Buffer[] = [];
  private len = 0;
  total = 0;
  constructor(
    src: AsyncIterable<Buffer>,
    readonly hash?: Hash,
  ) {
    this.it = src[Symbol.asyncIterator]();
  }
  private async more(): Promise<boolean> {
    const r = await this.it.next();
    if (r.done) return false;
    const b = r.value as Buffer;
    this.hash?.update(b);
    this.total += b.length;
    paced(b.length);
    this.bufs.push(b);
    this.len += b.length;
    return true;
  }
  /** exactly n bytes, or fewer at the end of the stream */
  async read(n: number): Promise<Buffer> {
    while (this.len < n) if (!(await this.more())) break;
    const m = Math.min(n, this.len);
    const all = this.bufs.length === 1 ? this.bufs[0]! : Buffer.concat(this.bufs, this.len);
    const out = all.subarray(0, m);
    const rest = all.subarray(m);
    this.bufs = rest.length ? [rest] : [];
    this.len = rest.length;
    return out;
  }
  /** n bytes handed out as they come (file contents), without gathering them */
  async *pieces(n: number): AsyncGenerator<Buffer> {
    let left = n;
    while (left > 0) {
      if (this.len === 0 && !(await this.more())) throw new TarError('tar stream ends inside an entry (truncated layer)');
      const b = this.bufs[0]!;
      if (b.length <= left) {
        this.bufs.shift();
        this.len -= b.length;
        left -= b.length;
        yield b;
      } else {
        this.bufs[0] = b.subarray(left);
        this.len -= left;
        yield b.subarray(0, left);
        left = 0;
      }
    }
  }
  async skip(n: number): Promise<void> {
    for await (const _ of this.pieces(n)) void _;
  }
  /** reads to the end (the zero padding after the end blocks belongs to the diff_id) */
  async drain(): Promise<void> {
    this.bufs = [];
    this.len = 0;
    while (await this.more()) {
      this.bufs = [];
      this.len = 0;
    }
  }
}

function str(b: Buffer, off: number, len: number): string {
  const s = b.subarray(off, off + len);
  const z = s.indexOf(0);
  return s.subarray(0, z < 0 ? len : z).toString('utf8');
}

function num(b: Buffer, off: number, len: number, field: string): number {
  const s = b.subarray(off, off + len);
  if (s[0]! & 0x80) {
    // base-256 (GNU/star) for values octal cannot hold: big-endian, top bit is the marker
    let v = s[0]! & 0x7f;
    for (let i = 1; i < len; i++) v = v * 256 + s[i]!;
    if (!Number.isSafeInteger(v)) throw new TarError(`tar header field ${field} out of range`);
    return v;
  }
  const t = s.toString('latin1').replace(/[\0 ]+$/, '').replace(/^ +/, '');
  if (t === '') return 0;
  if (!/^[0-7]+$/.test(t)) throw new TarError(`tar header field ${field} is not octal: ${JSON.stringify(t)}`);
  return parseInt(t, 8);
}

/**
 * pax extended header records, `"%d %s=%s\n"` (POSIX pax, "pax Extended Header"). Anything
 * else is refused: a lenient parser and a strict one reading the same layer see different
 * files, which is how entries get smuggled past a scanner.
 */
function parsePax(body: Buffer): Record<string, string | Buffer> {
  const out: Record<string, string | Buffer> = {};
  const bad = (why: string): never => {
    throw new TarError(`malformed pax extended header: ${why}`);
  };
  let i = 0;
  while (i < body.length) {
    const sp = body.indexOf(0x20, i);
    const lenText = body.subarray(i, sp < 0 ? Math.min(body.length, i + 20) : sp).toString('latin1');
    if (sp < 0 || !/^[1-9][0-9]{0,8}$/.test(lenText)) bad(`record length ${JSON.stringify(lenText)} is not a decimal number followed by a space`);
    const len = Number(lenText);
    if (i + len > body.length) bad(`record of ${len} bytes runs past the header's ${body.length} bytes`);
    if (body[i + len - 1] !== 0x0a) bad('record does not end in a newline');
    const rec = body.subarray(sp + 1, i + len - 1);
    const eq = rec.indexOf(0x3d);
    if (eq <= 0) bad(`record ${JSON.stringify(rec.toString('utf8').slice(0, 40))} has no '='`);
    const key = rec.subarray(0, eq).toString('utf8');
    const val = rec.subarray(eq + 1);
    out[key] = key.startsWith('SCHILY.xattr.') ? Buffer.from(val) : val.toString('utf8');
    i += len;
  }
  return out;
}

/** pax numbers: size, uid and gid are decimal integers, mtime may carry a fraction. */
function paxNumber(ext: Record<string, string | Buffer>, key: string, fallback: number, entry: string): number {
  const v = ext[key];
  if (v === undefined) return fallback;
  const text = typeof v === 'string' ? v : v.toString('latin1');
  const ok = key === 'mtime' ? /^-?[0-9]{1,18}(\.[0-9]{1,9})?$/.test(text) : /^[0-9]{1,18}$/.test(text);
  const n = Number(text);
  if (!ok || !Number.isSafeInteger(Math.trunc(n))) throw new TarError(`entry ${JSON.stringify(entry)}: pax record ${key}=${JSON.stringify(text)} is not a ${key === 'mtime' ? 'decimal time' : 'decimal number'}`);
  return n;
}

/**
 * Yields each entry; the consumer must read exactly `entry.size` bytes of its body with
 * `body()` (or leave it, and the reader skips it). Throws TarError on a corrupt header.
 */
export async function* readTar(r: ChunkReader): AsyncGenerator<TarEntry & { body: () => AsyncGenerator<Buffer> }> {
  let global: Record<string, string | Buffer> = {};
  let pax: Record<string, string | Buffer> = {};
  let longName: string | undefined;
  let longLink: string | undefined;
  for (;;) {
    const h = await r.read(512);
    if (h.length === 0) throw new TarError('tar stream ends without its end-of-archive blocks (truncated layer)');
    if (h.length < 512) throw new TarError('tar stream ends inside a header (truncated layer)');
    if (h.every((x) => x === 0)) {
      await r.drain();
      return;
    }
    let sum = 0;
    for (let i = 0; i < 512; i++) sum += i >= 148 && i < 156 ? 0x20 : h[i]!;
    if (sum !== num(h, 148, 8, 'chksum')) throw new TarError('tar header checksum mismatch (corrupt layer)');
    const flag = String.fromCharCode(h[156]!);
    const size = num(h, 124, 12, 'size');
    const padded = Math.ceil(size / 512) * 512;
    if (flag === 'x' || flag === 'g' || flag === 'L' || flag === 'K') {
      if (size > 1 << 20) throw new TarError(`tar ${flag} header of ${size} bytes is too large`);
      const body = (await r.read(padded)).subarray(0, size);
      if (body.length < size) throw new TarError('tar stream ends inside an extended header');
      if (flag === 'x') pax = { ...pax, ...parsePax(body) };
      else if (flag === 'g') global = { ...global, ...parsePax(body) };
      else if (flag === 'L') longName = str(body, 0, body.length);
      else longLink = str(body, 0, body.length);
      continue;
    }
    const type = TYPES[flag];
    const ustar = h.subarray(257, 263).toString('latin1') === 'ustar\0';
    let name = str(h, 0, 100);
    if (ustar) {
      const prefix = str(h, 345, 155);
      if (prefix) name = `${prefix}/${name}`;
    }
    const ext = { ...global, ...pax };
    if (longName !== undefined) name = longName;
    if (typeof ext.path === 'string') name = ext.path;
    let linkname = longLink ?? str(h, 157, 100);
    if (typeof ext.linkpath === 'string') linkname = ext.linkpath;
    const xattrs: Record<string, Buffer> = {};
    for (const [k, v] of Object.entries(ext)) if (k.startsWith('SCHILY.xattr.')) xattrs[k.slice(13)] = Buffer.isBuffer(v) ? v : Buffer.from(v);
    pax = {};
    longName = longLink = undefined;
    // GNU sparse files: type S (old GNU) or pax GNU.sparse.* (0.x, 1.0) carry a sparse map
    // and only the data segments; read as a plain file they unpack as the map plus packed
    // data, a different file from the one archived. Refused, by name.
    if (flag === 'S') throw new TarError(`entry ${JSON.stringify(name)}: GNU sparse file (type "S"): not supported, store the file whole`);
    const sparseKey = Object.keys(ext).find((k) => k.startsWith('GNU.sparse.'));
    if (sparseKey) {
      const real = typeof ext['GNU.sparse.name'] === 'string' ? ext['GNU.sparse.name'] : name;
      throw new TarError(`entry ${JSON.stringify(real)}: GNU sparse file (pax ${sparseKey}): not supported, store the file whole`);
    }
    if (!type) throw new TarError(`entry ${JSON.stringify(name)}: unsupported tar entry type ${JSON.stringify(flag)}`);
    const pnum = (k: string, d: number) => paxNumber(ext, k, d, name);
    const entrySize = pnum('size', size);
    const e: TarEntry = {
      name,
      type,
      mode: num(h, 100, 8, 'mode') & 0o7777,
      uid: pnum('uid', num(h, 108, 8, 'uid')),
      gid: pnum('gid', num(h, 116, 8, 'gid')),
      size: type === 'file' ? entrySize : 0,
      mtime: pnum('mtime', num(h, 136, 12, 'mtime')),
      linkname,
      devmajor: ustar || h.subarray(257, 263).toString('latin1').startsWith('ustar') ? num(h, 329, 8, 'devmajor') : 0,
      devminor: ustar || h.subarray(257, 263).toString('latin1').startsWith('ustar') ? num(h, 337, 8, 'devminor') : 0,
      xattrs,
    };
    const dataLen = type === 'file' ? entrySize : size;
    const dataPadded = Math.ceil(dataLen / 512) * 512;
    let consumed = false;
    yield {
      ...e,
      body: () => {
        consumed = true;
        return r.pieces(dataLen);
      },
    };
    if (!consumed) await r.skip(dataLen);
    await r.skip(dataPadded - dataLen);
  }
}

// ---- writer (import of a root filesystem directory) ----

function octal(v: number, len: number): string {
  return v.toString(8).padStart(len - 1, '0') + '\0';
}

export function tarHeader(name: string, e: { mode: number; uid: number; gid: number; size: number; mtime: number; flag: string; linkname: string }): Buffer {
  const h = Buffer.alloc(512);
  h.write(name, 0, 100, 'utf8');
  h.write(octal(e.mode, 8), 100, 'latin1');
  h.write(octal(e.uid, 8), 108, 'latin1');
  h.write(octal(e.gid, 8), 116, 'latin1');
  h.write(octal(e.size, 12), 124, 'latin1');
  h.write(octal(Math.floor(e.mtime), 12), 136, 'latin1');
  h.write(e.flag, 156, 'latin1');
  h.write(e.linkname, 157, 100, 'utf8');
  h.write('ustar\x0000', 257, 'latin1');
  h.fill(0x20, 148, 156);
  let sum = 0;
  for (let i = 0; i < 512; i++) sum += h[i]!;
  h.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 'latin1');
  return h;
}

export function paxRecord(key: string, value: Buffer): Buffer {
  const kv = Buffer.concat([Buffer.from(` ${key}=`), value, Buffer.from('\n')]);
  let len = kv.length + 1;
  while (String(len).length + kv.length !== len) len = String(len).length + kv.length;
  return Buffer.concat([Buffer.from(String(len)), kv]);
}

/**
 * Writes DIR as an uncompressed tar to fd (paths relative, sorted, hard links kept, xattrs
 * as SCHILY pax records); returns its sha256 (a layer's diff_id) and size.
 */
export function writeTarOfDir(dir: string, fd: number, kernel: Kernel = nativeKernel): { digest: string; size: number } {
  const hash = createHash('sha256');
  let size = 0;
  const out = (b: Buffer) => {
    hash.update(b);
    writeSync(fd, b);
    size += b.length;
  };
  const links = new Map<string, string>();
  const buf = Buffer.alloc(1 << 20);
  // Iterative and fd-relative (as remove-tree.ts): a root with thousands of nested
  // directories, or paths past PATH_MAX, is archived like any other. Only the current
  // directory is open; going back up opens ".." and checks it is the directory it left.
  interface Frame {
    rel: string;
    names: string[];
    next: number;
    dev: number;
    ino: number;
  }
  let cur = openSync(dir, constants.O_RDONLY | constants.O_DIRECTORY);
  const top = fstatSync(cur);
  const stack: Frame[] = [{ rel: '', names: readdirSync(`/proc/self/fd/${cur}`).sort(), next: 0, dev: top.dev, ino: top.ino }];
  try {
    while (stack.length) {
      const f = stack.at(-1)!;
      if (f.next === f.names.length) {
        stack.pop();
        if (!stack.length) break;
        const up = openSync(`/proc/self/fd/${cur}/..`, O_DIR);
        const ust = fstatSync(up);
        closeSync(cur);
        cur = up;
        if (ust.dev !== stack.at(-1)!.dev || ust.ino !== stack.at(-1)!.ino) throw new TarError(`${join(dir, f.rel)}: a directory was moved while it was archived`);
        continue;
      }
      const n = f.names[f.next++]!;
      const r = f.rel ? `${f.rel}/${n}` : n;
      const p = `/proc/self/fd/${cur}/${n}`;
      const shown = () => `${dir}/${r}`;
      const st = lstatSync(p);
      let flag = '0';
      let linkname = '';
      let fsize = 0;
      const key = `${st.dev}:${st.ino}`;
      if (st.isDirectory()) flag = '5';
      else if (st.isSymbolicLink()) ((flag = '2'), (linkname = readlinkSync(p)));
      else if (st.isFile()) {
        if (st.nlink > 1 && links.has(key)) ((flag = '1'), (linkname = links.get(key)!));
        else {
          fsize = st.size;
          if (st.nlink > 1) links.set(key, r);
        }
      } else if (st.isFIFO()) flag = '6';
      else throw new TarError(`${shown()}: device nodes and sockets cannot go into an image (the runtime makes /dev)`);
      const name = flag === '5' ? `${r}/` : r;
      const records: Buffer[] = [];
      if (Buffer.byteLength(name) > 99) records.push(paxRecord('path', Buffer.from(name)));
      if (Buffer.byteLength(linkname) > 99) records.push(paxRecord('linkpath', Buffer.from(linkname)));
      for (const x of kernel.llistxattr(p)) {
        if (x.startsWith('trusted.overlay.') || x.startsWith('user.overlay.')) continue;
        const v = kernel.lgetxattr(p, x);
        if (v) records.push(paxRecord(`SCHILY.xattr.${x}`, v));
      }
      if (records.length) {
        const body = Buffer.concat(records);
        out(tarHeader('PaxHeader', { mode: 0o644, uid: 0, gid: 0, size: body.length, mtime: 0, flag: 'x', linkname: '' }));
        out(Buffer.concat([body, Buffer.alloc((512 - (body.length % 512)) % 512)]));
      }
      out(tarHeader(name.slice(0, 100), { mode: st.mode & 0o7777, uid: st.uid, gid: st.gid, size: fsize, mtime: st.mtimeMs / 1000, flag, linkname: linkname.slice(0, 100) }));
      if (fsize > 0) {
        const in_ = openSync(p, constants.O_RDONLY | constants.O_NOFOLLOW);
        try {
          let left = fsize;
          while (left > 0) {
            const k = readSync(in_, buf, 0, Math.min(buf.length, left), null);
            if (k === 0) throw new TarError(`${shown()}: file shrank while being archived`);
            out(Buffer.from(buf.subarray(0, k)));
            left -= k;
          }
        } finally {
          closeSync(in_);
        }
        const pad = (512 - (fsize % 512)) % 512;
        if (pad) out(Buffer.alloc(pad));
      }
      if (flag === '5') {
        const down = openSync(p, O_DIR);
        const dst = fstatSync(down);
        closeSync(cur);
        cur = down;
        stack.push({ rel: r, names: readdirSync(`/proc/self/fd/${cur}`).sort(), next: 0, dev: dst.dev, ino: dst.ino });
      }
    }
  } catch (e) {
    if (e instanceof TsrunError) throw e;
    const f = stack.at(-1);
    throw new TarError(`${dir}${f?.rel ? `/${f.rel}` : ''}: ${errnoOf(e)?.name ?? (e as Error).message}`, { cause: e });
  } finally {
    closeSync(cur);
  }
  out(Buffer.alloc(1024));
  return { digest: `sha256:${hash.digest('hex')}`, size };
}
