import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Kernel } from './types.js';
import { UnsupportedError } from '../errors.js';

/** The project root (the nearest folder with package.json), where build/ holds the addon and the init. */
export const PROJECT_ROOT = ((): string => {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json')) && dirname(dir) !== dir) dir = dirname(dir);
  return dir;
})();
export const INIT_PATH = join(PROJECT_ROOT, 'build', 'tsrun-init');
export const MONITOR_PATH = join(PROJECT_ROOT, 'build', 'tsrun-monitor');

// The addon exports the Kernel calls themselves; the wrapper below only hands it Buffers
// (napi's Buffer::As) where the interface takes any Uint8Array.
type Addon = Kernel;

let addon: Addon | undefined;

function load(): Addon {
  if (addon) return addon;
  const path = join(PROJECT_ROOT, 'build', 'Release', 'tsrun.node');
  if (!existsSync(path) || !existsSync(INIT_PATH)) {
    throw new UnsupportedError(
      `native parts not built (${path}, ${INIT_PATH}): run \`npm install\` (needs g++, make and a static libc)`,
    );
  }
  // process.dlopen, not require(): no module-path resolution on every CLI call
  const m = { exports: {} as Addon };
  process.dlopen(m, path);
  addon = m.exports;
  return addon;
}

/** The real kernel, through the addon. Loaded lazily so `--dry-run` never needs it. */
export const nativeKernel: Kernel = {
  spawn: (req) => load().spawn({ ...req, plan: toBuffer(req.plan) }),
  syncSend: (fd, type, passFd) => load().syncSend(fd, type, passFd),
  syncRecv: (fd) => load().syncRecv(fd),
  waitPid: (pid) => load().waitPid(pid),
  setWinsize: (fd, rows, cols) => load().setWinsize(fd, rows, cols),
  close: (fd) => load().close(fd),
  strerror: (errno) => load().strerror(errno),
  idmapTree: (path, pid, recursive) => load().idmapTree(path, pid, recursive),
  mkfifo: (path, mode) => load().mkfifo(path, mode),
  prepareSpawn: (req) => load().prepareSpawn({ initPath: req.initPath, plan: toBuffer(req.plan) }),
  socketpair: () => load().socketpair(),
  pipe: () => load().pipe(),
  sendMsg: (fd, data, fds) => load().sendMsg(fd, toBuffer(data), fds),
  recvMsg: (fd, size) => load().recvMsg(fd, size),
  sendConsole: (path, fd) => load().sendConsole(path, fd),
  readFileInRoot: (root, path, maxBytes) => load().readFileInRoot(root, path, maxBytes),
  readDirInRoot: (root, path, maxEntries) => load().readDirInRoot(root, path, maxEntries),
  setChildSubreaper: () => load().setChildSubreaper(),
  flock: (fd, mode) => load().flock(fd, mode),
  mknod: (path, mode, major, minor) => load().mknod(path, mode, major, minor),
  lsetxattr: (path, name, value) => load().lsetxattr(path, name, toBuffer(value)),
  lgetxattr: (path, name) => load().lgetxattr(path, name),
  llistxattr: (path) => load().llistxattr(path),
};

function toBuffer(u: Uint8Array): Buffer {
  return Buffer.isBuffer(u) ? u : Buffer.from(u.buffer, u.byteOffset, u.byteLength);
}
