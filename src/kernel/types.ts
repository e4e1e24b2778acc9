// The typed kernel boundary: everything tsrun asks of the kernel that Node cannot do
// itself goes through this interface. src/kernel/native.ts implements it with the addon;
// code that calls it takes a Kernel parameter (default: the addon), so unit tests pass a
// fake that records calls or throws an errno (test/unit/in-root.test.ts, image.test.ts).
// A failure is an Error with `errno` (number) and `syscall`; errnoOf names it.

export interface SpawnRequest {
  /** path of the static init binary; the addon copies it into a sealed memfd once */
  initPath: string;
  /** encoded plan (src/plan/encode.ts) */
  plan: Uint8Array;
  /** clone(2) flags, CLONE_NEW* only (SIGCHLD is added) */
  cloneFlags: number;
  /** fds that become the child's 0, 1, 2 */
  stdio: [number, number, number];
  /** a cgroup2 directory the child is born in (clone3 CLONE_INTO_CGROUP) */
  cgroupDir?: string;
  /** --preserve-fds N: this process's fds 3..3+N-1 become the container's 3..3+N-1 */
  preserveFds?: number;
}

export interface SpawnResult {
  pid: number;
  /** the parent's end of the SOCK_SEQPACKET sync socket */
  syncFd: number;
}

export interface SyncMessage {
  type: number;
  index: number;
  err: number;
  /** an fd passed with SCM_RIGHTS (the pty master) */
  fd?: number;
}

export interface ExitStatus {
  code?: number;
  signal?: number;
}

export interface PreparedSpawn {
  /** the sealed memfd of tsrun-init (owned by the addon: do not close) */
  initFd: number;
  planFd: number;
  /** parent end of the sync socket */
  syncFd: number;
  /** child end, to hand to whoever clones */
  childSyncFd: number;
}

export interface Kernel {
  spawn(req: SpawnRequest): SpawnResult;
  syncSend(fd: number, type: number, passFd?: number): void;
  /** null when the child closed its end (it exec'd, or died) */
  syncRecv(fd: number): SyncMessage | null;
  waitPid(pid: number): Promise<ExitStatus>;
  setWinsize(fd: number, rows: number, cols: number): void;
  close(fd: number): void;
  strerror(errno: number): string;
  /** a detached copy of the mount at `path`, idmapped through `pid`'s user namespace (an fd to pass with MSG_MOUNT_FD) */
  idmapTree(path: string, pid: number, recursive: boolean): number;
  mkfifo(path: string, mode: number): void;
  /** everything a clone needs, for a clone done by another process (tsrun-monitor) */
  prepareSpawn(req: { initPath: string; plan: Uint8Array }): PreparedSpawn;
  socketpair(): [number, number];
  /** pipe2(O_CLOEXEC): [read end, write end] */
  pipe(): [number, number];
  sendMsg(fd: number, data: Uint8Array, fds?: number[]): void;
  /** one datagram, or null on EOF */
  recvMsg(fd: number, size: number): Buffer | null;
  /** connect to an OCI --console-socket and pass it the pty master (SCM_RIGHTS) */
  sendConsole(socketPath: string, fd: number): void;
  /**
   * A regular file below `root`, resolved inside it (openat2 RESOLVE_IN_ROOT|RESOLVE_NO_MAGICLINKS):
   * never a host file through a symlink, never an open of a FIFO or device (EINVAL with
   * `fileType`, EISDIR), at most maxBytes (EFBIG). docs/host-access.md.
   */
  readFileInRoot(root: string, path: string, maxBytes: number): Buffer;
  /** The names in a directory below `root`, resolved inside it as readFileInRoot does; at most maxEntries. */
  readDirInRoot(root: string, path: string, maxEntries: number): string[];
  /** prctl(PR_SET_CHILD_SUBREAPER, 1): orphaned descendants are reparented to this process (exec's grandchild) */
  setChildSubreaper(): void;
  /**
   * flock(2) without blocking: true when taken, false when held through another open file
   * description. "sh"/"ex" take a shared/exclusive lock, "un" drops it. The kernel drops it
   * too when the description's last fd closes (a killed holder leaves no stale lock).
   */
  flock(fd: number, mode: 'sh' | 'ex' | 'un'): boolean;
  /** mknod(2); `mode` carries the type (fs.constants.S_IFCHR, S_IFIFO): overlay whiteouts (char 0:0) and FIFOs of image layers */
  mknod(path: string, mode: number, major: number, minor: number): void;
  /** lsetxattr(2): sets the attribute on `path` itself, never on a symlink's target */
  lsetxattr(path: string, name: string, value: Uint8Array): void;
  /** lgetxattr(2): the value, or null when `path` has no such attribute (ENODATA) */
  lgetxattr(path: string, name: string): Buffer | null;
  /** llistxattr(2): the attribute names of `path` itself */
  llistxattr(path: string): string[];
}
