import { closeSync, constants, fstatSync, lstatSync, openSync, readdirSync, rmdirSync, unlinkSync } from 'node:fs';
import { TsrunError } from '../errors.js';

// rm -rf for trees whose content a container or an image chose: a layer, a container's
// upper dir, an import's scratch space. Node 20's fs.rmSync({recursive}) recurses once per
// directory level and joins full paths: 2,100 nested directories end in "Maximum call stack
// size exceeded", and past PATH_MAX (4096 bytes) every call fails with ENAMETOOLONG — a
// layer or a container could make itself unremovable, and every later `rmi`/`prune` with it.
// So this walk is iterative (its own stack of names, no recursion) and works relative to one
// open directory fd at a time (/proc/self/fd/N/NAME: never more than one name to resolve),
// the way rm(1)'s fts walk does with openat/unlinkat:
//  - names are read as bytes (a layer may hold names that are not UTF-8);
//  - symlinks are unlinked, never followed (O_NOFOLLOW on every open);
//  - going back up opens "..", and checks it is the directory it came from (dev, inode):
//    a directory renamed during the walk stops it rather than sending it elsewhere;
//  - it never crosses into another filesystem (a mount point left inside): it stops there.
// Only one directory fd is open at a time, whatever the depth.

export class RemoveError extends TsrunError {}

const O_DIR = constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW;
const at = (fd: number, name?: Buffer): Buffer => Buffer.concat([Buffer.from(`/proc/self/fd/${fd}${name ? '/' : ''}`), name ?? Buffer.alloc(0)]);
const code = (e: unknown) => (e as NodeJS.ErrnoException).code;

function ignoreENOENT(f: () => void): void {
  try {
    f();
  } catch (e) {
    if (code(e) !== 'ENOENT') throw e;
  }
}

interface Frame {
  name: Buffer;
  dev: number;
  ino: number;
  /** subdirectories still to empty and remove */
  pending: Buffer[];
}

/** Unlinks every non-directory in the directory open as fd; returns its subdirectories. */
function scan(fd: number): Buffer[] {
  const dirs: Buffer[] = [];
  for (const e of readdirSync(at(fd), { withFileTypes: true, encoding: 'buffer' })) {
    const name = e.name as unknown as Buffer;
    if (e.isDirectory()) dirs.push(name);
    else ignoreENOENT(() => unlinkSync(at(fd, name)));
  }
  return dirs;
}

/** Removes `path` and everything below it; a missing path is not an error. */
export function removeTree(path: string): void {
  let st;
  try {
    st = lstatSync(path);
  } catch (e) {
    if (code(e) === 'ENOENT') return;
    throw new RemoveError(`remove ${path}: ${code(e) ?? (e as Error).message}`, { cause: e });
  }
  if (!st.isDirectory()) {
    ignoreENOENT(() => unlinkSync(path));
    return;
  }
  let fd = -1;
  let where = '';
  try {
    try {
      fd = openSync(path, O_DIR);
    } catch (e) {
      if (code(e) === 'ENOENT') return;
      throw e;
    }
    const top = fstatSync(fd);
    const stack: Frame[] = [{ name: Buffer.alloc(0), dev: top.dev, ino: top.ino, pending: scan(fd) }];
    for (;;) {
      const cur = stack.at(-1)!;
      const next = cur.pending.pop();
      if (next) {
        let child: number;
        try {
          child = openSync(at(fd, next), O_DIR);
        } catch (e) {
          // gone meanwhile, or replaced by a non-directory: unlink whatever is there now
          if (code(e) === 'ENOENT') continue;
          if (code(e) === 'ENOTDIR' || code(e) === 'ELOOP') {
            ignoreENOENT(() => unlinkSync(at(fd, next)));
            continue;
          }
          where = next.toString();
          throw e;
        }
        const cst = fstatSync(child);
        if (cst.dev !== top.dev) {
          closeSync(child);
          throw new RemoveError(`remove ${path}: ${JSON.stringify(next.toString())} at depth ${stack.length} is on another filesystem (a mount point): not crossed, not removed`);
        }
        closeSync(fd);
        fd = child;
        stack.push({ name: next, dev: cst.dev, ino: cst.ino, pending: scan(fd) });
        continue;
      }
      // cur has no subdirectory left: go up to its parent and remove it there
      stack.pop();
      if (stack.length === 0) break;
      const parent = openSync(at(fd, Buffer.from('..')), O_DIR);
      const pst = fstatSync(parent);
      const want = stack.at(-1)!;
      if (pst.dev !== want.dev || pst.ino !== want.ino) {
        closeSync(parent);
        throw new RemoveError(`remove ${path}: a directory was moved while it was being removed: stopped`);
      }
      closeSync(fd);
      fd = parent;
      where = cur.name.toString();
      ignoreENOENT(() => rmdirSync(at(fd, cur.name)));
      where = '';
    }
    closeSync(fd);
    fd = -1;
    ignoreENOENT(() => rmdirSync(path));
  } catch (e) {
    if (e instanceof RemoveError) throw e;
    throw new RemoveError(`remove ${path}${where ? ` (at ${JSON.stringify(where)})` : ''}: ${code(e) ?? (e as Error).message}`, { cause: e });
  } finally {
    if (fd >= 0) closeSync(fd);
  }
}
