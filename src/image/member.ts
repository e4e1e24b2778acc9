import { closeSync, constants, fstatSync, lstatSync, openSync, readlinkSync, readSync, type Stats } from 'node:fs';
import { TsrunError } from '../errors.js';

// Members of a docker-save archive or an OCI image layout are data, never paths (trust-
// boundary rule 3). A member is looked up one component at a time from a directory fd of the
// archive's root, through /proc/self/fd/N/NAME so that no path longer than one name is ever
// resolved by the kernel on our behalf:
//  - a symlink is resolved here, inside the archive (docker's legacy save format links a
//    repeated layer to its first copy); an absolute target or a `..` above the root is
//    refused, so a member can never name a host file;
//  - the member itself must be a regular file: a device (a link to /dev/zero read forever),
//    FIFO or socket is refused before it is opened, and the open uses O_NOFOLLOW|O_NONBLOCK
//    with an fstat check that it is still the file that was looked at.

export class MemberError extends TsrunError {}

const O_DIR = constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW;
const O_FILE = constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK;
const MAX_LINKS = 40; // the kernel's own limit before ELOOP (path_resolution(7))

function kind(st: Stats): string {
  if (st.isDirectory()) return 'a directory';
  if (st.isSymbolicLink()) return 'a symlink';
  if (st.isCharacterDevice()) return 'a character device';
  if (st.isBlockDevice()) return 'a block device';
  if (st.isFIFO()) return 'a FIFO';
  if (st.isSocket()) return 'a socket';
  return 'a regular file';
}

export class ArchiveRoot {
  private readonly fd: number;
  /** `dir` is what the user named (their own path); `label` names the archive in messages */
  constructor(
    dir: string,
    readonly label: string,
  ) {
    this.fd = openSync(dir, constants.O_RDONLY | constants.O_DIRECTORY);
  }
  close(): void {
    closeSync(this.fd);
  }

  private refuse(rel: string, why: string): never {
    throw new MemberError(`${this.label}: member ${JSON.stringify(rel)}${why}: refused`);
  }

  /**
   * Resolves `rel` inside the archive. Returns an open fd and its stat for a regular file,
   * 'dir' for a directory, undefined if absent; refuses anything else.
   */
  private resolve(rel: string, want: 'file' | 'any'): { fd: number; st: Stats } | 'dir' | 'other' | undefined {
    if (typeof rel !== 'string' || rel === '' || rel.includes('\0')) this.refuse(String(rel), ' is not a path');
    if (rel.startsWith('/') || rel.split('/').includes('..')) this.refuse(rel, ' leaves the archive');
    const todo = rel.split('/').filter((c) => c !== '' && c !== '.').reverse();
    const dirs: number[] = []; // fds opened below the root, innermost last
    let links = 0;
    try {
      while (todo.length) {
        const c = todo.pop()!;
        if (c === '..') {
          if (!dirs.length) this.refuse(rel, ': a symlink in its path climbs out of the archive');
          closeSync(dirs.pop()!);
          continue;
        }
        const at = `/proc/self/fd/${dirs.at(-1) ?? this.fd}/${c}`;
        let st: Stats;
        try {
          st = lstatSync(at);
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
          throw e;
        }
        if (st.isSymbolicLink()) {
          const target = readlinkSync(at);
          if (target.startsWith('/')) this.refuse(rel, `${todo.length === 0 && links === 0 ? '' : `: ${JSON.stringify(c)}`} is a symlink to ${JSON.stringify(target)}, outside the archive`);
          if (++links > MAX_LINKS) this.refuse(rel, ': too many symlinks in its path (ELOOP)');
          todo.push(...target.split('/').filter((x) => x !== '' && x !== '.').reverse());
          continue;
        }
        if (st.isDirectory()) {
          dirs.push(openSync(at, O_DIR));
          continue;
        }
        if (todo.length) this.refuse(rel, `: ${JSON.stringify(c)} in its path is ${kind(st)}, not a directory`);
        if (!st.isFile()) {
          if (want === 'any') return 'other';
          this.refuse(rel, ` is ${kind(st)}, not a regular file`);
        }
        const fd = openSync(at, O_FILE);
        const now = fstatSync(fd);
        if (!now.isFile() || now.ino !== st.ino || now.dev !== st.dev) {
          closeSync(fd);
          this.refuse(rel, ' changed while it was opened');
        }
        return { fd, st: now };
      }
      if (want === 'file') this.refuse(rel, ' is a directory, not a regular file');
      return 'dir';
    } catch (e) {
      if (e instanceof MemberError) throw e;
      const code = (e as NodeJS.ErrnoException).code;
      throw new MemberError(`${this.label}: member ${JSON.stringify(rel)}: ${code ?? (e as Error).message}`, { cause: e });
    } finally {
      for (const d of dirs) closeSync(d);
    }
  }

  /** is there an entry of that name at the top of the archive (lstat: nothing is followed)? */
  has(name: string): boolean {
    try {
      lstatSync(`/proc/self/fd/${this.fd}/${name}`);
      return true;
    } catch {
      return false;
    }
  }

  /** 'file', 'dir', 'other' or undefined: what the archive holds at `rel` (symlinks resolved inside it) */
  kind(rel: string): 'file' | 'dir' | 'other' | undefined {
    const r = this.resolve(rel, 'any');
    if (r && typeof r === 'object') {
      closeSync(r.fd);
      return 'file';
    }
    return r;
  }

  /** an fd of the regular file at `rel` (the caller closes it), or a MemberError */
  open(rel: string): { fd: number; size: number } {
    const r = this.resolve(rel, 'file');
    if (r === undefined) this.refuse(rel, ' is missing from the archive');
    const { fd, st } = r as { fd: number; st: Stats };
    return { fd, size: st.size };
  }

  /** the whole member, at most `max` bytes (JSON documents: manifests, configs, indexes) */
  read(rel: string, max = 8 << 20): Buffer {
    const { fd, size } = this.open(rel);
    try {
      if (size > max) this.refuse(rel, ` is ${size} bytes, more than the ${max} a JSON document may have`);
      const buf = Buffer.alloc(size);
      let off = 0;
      for (let n; off < size && (n = readSync(fd, buf, off, size - off, off)) > 0; off += n);
      if (off !== size) this.refuse(rel, ' shrank while it was read');
      return buf;
    } finally {
      closeSync(fd);
    }
  }

  /** parsed JSON of a member; a syntax error names the member */
  json<T>(rel: string): T {
    return this.parse<T>(rel, this.read(rel));
  }
  parse<T>(rel: string, b: Buffer): T {
    try {
      return JSON.parse(b.toString('utf8')) as T;
    } catch (e) {
      throw new MemberError(`${this.label}: member ${JSON.stringify(rel)}: not JSON: ${(e as Error).message}`, { cause: e });
    }
  }
}
