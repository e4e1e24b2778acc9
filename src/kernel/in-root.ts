import { KernelError } from '../errors.js';
import { errnoOf } from './errno.js';
import { nativeKernel } from './native.js';
import type { Kernel } from './types.js';

// Trust-boundary rule 2 (design.md, docs/host-access.md): an image's files and a running
// container's files are hostile, so tsrun reads them from the host side only through
// readFileInRoot / readDirInRoot, which resolve every path inside the given root. Never
// readFileSync a path under a layer or /proc/<pid>/root: it follows a symlink to the host.

/** /etc/passwd and /etc/group: far above any real one, small enough to hold in memory. */
export const MAX_ETC_FILE = 4 << 20;

/** The file's text; `undefined` when it is absent from the root (ENOENT, or ENOTDIR: a parent is not a directory). */
export function readRootFile(root: string, path: string, maxBytes: number, kernel: Kernel = nativeKernel): string | undefined {
  const r = lookup(root, path, maxBytes, kernel);
  return 'text' in r ? r.text : undefined;
}

type Lookup = { text: string } | { absent: 'ENOENT' | 'ENOTDIR' | 'whiteout' };

function lookup(root: string, path: string, maxBytes: number, kernel: Kernel): Lookup {
  try {
    return { text: kernel.readFileInRoot(root, path, maxBytes).toString('utf8') };
  } catch (e) {
    const x = e as { syscall?: string; fileType?: string; rdev?: number; detail?: string };
    const en = errnoOf(e);
    if (!en || x.syscall === undefined) throw e;
    // the root itself (a pid gone, a layer missing) is not a fact about the path
    if (x.syscall.startsWith('open root ')) throw new KernelError(`open ${root}`, en.errno, en.name, strerror(e));
    if (x.syscall.startsWith('openat2 ') && x.fileType === undefined && (en.name === 'ENOENT' || en.name === 'ENOTDIR')) return { absent: en.name };
    // overlayfs(5): a character device 0:0 in a layer is a whiteout, the file deleted there
    if (x.fileType === 'character device' && x.rdev === 0) return { absent: 'whiteout' };
    throw new KernelError(path, en.errno, en.name, x.detail ?? strerror(e));
  }
}

/** "No such file or directory" from the addon's "openat2 /etc/passwd: No such file or directory" */
function strerror(e: unknown): string {
  return String((e as Error).message).replace(/^.*: /, '');
}

/**
 * A file of an image as its container will see it, read from the unpacked layers: the top
 * layer that has the path (or a whiteout of it) decides, as overlayfs does. Each layer is
 * its own root: a symlink resolves within the layer that holds it, so one that points into
 * a lower layer reads as absent there and the lower layers are asked for the path itself
 * (opaque directories are not consulted either); both only ever read the image.
 */
export function imageFileReader(layers: readonly string[], maxBytes = MAX_ETC_FILE, kernel: Kernel = nativeKernel): (path: string) => string | undefined {
  return (path) => {
    for (const layer of [...layers].reverse()) {
      const r = lookup(layer, path, maxBytes, kernel);
      if ('text' in r) return r.text;
      if (r.absent !== 'ENOENT') return undefined; // deleted or shadowed in this layer
    }
    return undefined;
  };
}

/** A file of a running container, through its init's root: /proc/<pid>/root opened as the root, the path resolved inside it. */
export function containerFileReader(pid: number, maxBytes = MAX_ETC_FILE, kernel: Kernel = nativeKernel): (path: string) => string | undefined {
  return (path) => readRootFile(`/proc/${pid}/root`, path, maxBytes, kernel);
}

/** The names in a directory below `root` (at most maxEntries); `undefined` when the root or the path is absent or not a directory. */
export function listRootDir(root: string, path: string, maxEntries: number, kernel: Kernel = nativeKernel): string[] | undefined {
  try {
    return kernel.readDirInRoot(root, path, maxEntries);
  } catch (e) {
    const en = errnoOf(e);
    if (en && (en.name === 'ENOENT' || en.name === 'ENOTDIR')) return undefined;
    throw new KernelError(`${path} (below ${root})`, en?.errno ?? 0, en?.name ?? 'error', (e as Error).message);
  }
}
