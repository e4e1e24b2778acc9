// Mirrors native/protocol.h; test/unit/protocol.test.ts parses the header and
// checks every number here against it.

export const PLAN_MAGIC = 0x4e555254;
export const PLAN_VERSION = 1;

export const OP = {
  MOUNT: 1,
  MKDIR: 2,
  MKFILE: 3,
  SYMLINK: 4,
  MKNOD: 5,
  PIVOT_ROOT: 6,
  UMOUNT: 7,
  CHDIR: 8,
  SETHOSTNAME: 9,
  SETDOMAINNAME: 10,
  SETRLIMIT: 11,
  SETGROUPS: 12,
  SETRESGID: 13,
  SETRESUID: 14,
  KEEPCAPS: 15,
  CAPBSET: 16,
  CAPSET: 17,
  NO_NEW_PRIVS: 18,
  SECCOMP: 19,
  WRITE_FILE: 20,
  CONSOLE: 21,
  SETSID: 22,
  WAIT_START: 23,
  EXEC: 24,
  LOOPBACK_UP: 25,
  UNSHARE: 26,
  MOUNT_FD: 27,
  REMOUNT_RO: 28,
  MASK_PATH: 29,
  SET_DUMPABLE: 30,
  OOM_SCORE_ADJ: 31,
  ROOT: 32,
  SETNS: 33,
  FORK: 34,
  HOOK_SYNC: 35,
  RUN_HOOK: 36,
  CHROOT: 45,
  JOIN_KEYRING: 46,
  LANDLOCK: 40,
  LSM_EXEC: 41,
} as const;
export type OpName = keyof typeof OP;

export const MSG = {
  GO: 1,
  ERROR: 2,
  PTY: 3,
  READY: 4,
  START: 5,
  MOUNT_FD: 6,
  ID_MAPPED: 7,
  PID: 8,
  HOOKS: 9,
  HOOKS_DONE: 10,
} as const;

export const INIT_FAILED = 125;
