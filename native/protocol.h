/*
 * The contract between the TypeScript plan encoder (src/plan/encode.ts) and
 * the static init (init.c). Keep the two in step: the op numbers below are
 * mirrored in src/plan/protocol.ts, and a unit test compares them.
 *
 * Sequence of `run` and `create` (parent = the tsrun Node process, child = tsrun-init):
 *
 *   parent                                   child (cloned with the namespace flags)
 *   ------                                   -----
 *   memfd(plan), socketpair(sync)
 *   clone3(flags, cgroup2 dir) ───────────►  dup stdio to 0-2, sync to fd 3, plan to fd 4,
 *                                            execveat(sealed memfd of tsrun-init)
 *   (userns: write uid_map/gid_map, join v1 cgroups)
 *   send MSG_GO ──────────────────────────►  read plan from fd 4, run ops in order
 *                                            (first: write 0 to each v1 cgroup's tasks)
 *                                            (OP_CONSOLE: send MSG_PTY + master fd)
 *                                            (OP_WAIT_START: send MSG_READY, wait MSG_START)
 *   run prestart/createRuntime hooks ◄────── (OP_HOOK_SYNC: send MSG_HOOKS, before pivot_root)
 *   send MSG_HOOKS_DONE ──────────────────►  continue (OP_RUN_HOOK: createContainer hooks)
 *   recv: EOF  ◄──────────────────────────── execve(container command) closes fd 3 (CLOEXEC)
 *   recv: MSG_ERROR{index, errno} ◄───────── any op failed: report and _exit(INIT_FAILED)
 *
 * Sequence of `exec`: the node copy never enters the container (CVE-2019-5736). It is
 * spawned with no namespace flag and no cgroup, in the host's namespaces and cgroups, and
 * execs tsrun-init at once; the init does every join itself, as runc's nsexec does:
 *
 *   tsrun (PR_SET_CHILD_SUBREAPER)           tsrun-init, non-dumpable from its first instruction
 *   clone3(no flags) ─────────────────────►  execveat(sealed memfd of tsrun-init)
 *   send MSG_GO ──────────────────────────►  write 0 to the container's cgroup.procs / tasks
 *                                            (host paths: before any setns)
 *                                            OP_SETNS user, cgroup, ipc, uts, net, pid, mnt
 *                                            OP_FORK ──► grandchild, born in the container's
 *   recv: MSG_PID{index = grandchild} ◄──────   PID namespace; waits until this process has
 *   waitpid(child) ◄──────────────────────── _exit(0)  sent MSG_PID and exited
 *   (the grandchild is now tsrun's child)                   │
 *                          ◄───────────────────────── rest of the plan (OP_CONSOLE: MSG_PTY),
 *   recv: EOF ◄────────────────────────────────────── execve(command) closes fd 3
 *
 * Plan encoding: a sequence of ops, each
 *   struct op_header; u64 ints[nint]; u8 blob[bloblen] padded to 8; then nstr
 *   NUL-terminated strings, the whole op padded to 8 bytes (size includes all).
 */
#ifndef TSRUN_PROTOCOL_H
#define TSRUN_PROTOCOL_H
#include <stdint.h>

#define TSRUN_PLAN_MAGIC 0x4e555254u /* "TRUN" little-endian */
#define TSRUN_PLAN_VERSION 1

struct plan_header {
  uint32_t magic;
  uint32_t version;
  uint32_t nops;
  uint32_t size; /* total bytes, header included */
};

struct op_header {
  uint32_t op;
  uint32_t size;   /* whole op, header included, multiple of 8 */
  uint16_t nint;
  uint16_t nstr;
  uint32_t bloblen;
};

enum tsrun_op {
  OP_MOUNT = 1,          /* ints: flags            strs: source, target, fstype, data ("" = NULL) */
  OP_MKDIR = 2,          /* ints: mode             strs: path (parents created too) */
  OP_MKFILE = 3,         /* ints: mode             strs: path (empty file, a bind-mount target) */
  OP_SYMLINK = 4,        /*                        strs: target, linkpath */
  OP_MKNOD = 5,          /* ints: mode, dev[, uid, gid] strs: path */
  OP_PIVOT_ROOT = 6,     /*                        strs: new root (old root stacked and detached) */
  OP_UMOUNT = 7,         /* ints: flags            strs: path */
  OP_CHDIR = 8,          /*                        strs: path */
  OP_SETHOSTNAME = 9,    /*                        strs: name */
  OP_SETDOMAINNAME = 10, /*                        strs: name */
  OP_SETRLIMIT = 11,     /* ints: resource, soft, hard */
  OP_SETGROUPS = 12,     /* ints: gid...  */
  OP_SETRESGID = 13,     /* ints: gid */
  OP_SETRESUID = 14,     /* ints: uid */
  OP_KEEPCAPS = 15,      /* ints: 0|1 */
  OP_CAPBSET = 16,       /* ints: mask of capabilities to keep in the bounding set */
  OP_CAPSET = 17,        /* ints: effective, permitted, inheritable, ambient (64-bit masks) */
  OP_NO_NEW_PRIVS = 18,
  OP_SECCOMP = 19,       /* ints: flags            blob: struct sock_filter[] */
  OP_WRITE_FILE = 20,    /*                        strs: path, content (O_WRONLY|O_TRUNC) */
  OP_CONSOLE = 21,       /* ints: rows, cols, bind — open /dev/ptmx in the container, send master,
                            slave → 0-2, ctty; bind it over /dev/console (not for exec) */
  OP_SETSID = 22,
  OP_WAIT_START = 23,    /* strs: fifo — send MSG_READY, then block opening the fifo for writing
                            until `start` opens it for reading (it was opened O_PATH before any
                            mount changed, so a host path works after pivot_root) */
  OP_EXEC = 24,          /* ints: argc, envc       strs: file (PATH searched in env)
                            blob: argv... then env..., each NUL-terminated (any number: ARG_MAX limits) */
  OP_LOOPBACK_UP = 25,   /* bring "lo" up in the new network namespace */
  OP_UNSHARE = 26,       /* ints: CLONE_* flags */
  OP_MOUNT_FD = 27,      /* ints: flags            strs: target — receive a detached mount (SCM_RIGHTS) and move_mount it */
  OP_REMOUNT_RO = 28,    /* ints: extra flags      strs: path — keep locked flags, add MS_RDONLY */
  OP_MASK_PATH = 29,     /*                        strs: path — /dev/null over a file, ro tmpfs over a dir, skip if absent */
  OP_SET_DUMPABLE = 30,  /* ints: 0|1 */
  OP_OOM_SCORE_ADJ = 31, /* ints: value (signed) */
  OP_ROOT = 32,          /* strs: path — later paths under it resolve inside it (openat2 RESOLVE_IN_ROOT) */
  OP_SETNS = 33,         /* ints: CLONE_NEW* type  strs: /proc/<pid>/ns/<name> (opened before any setns) */
  OP_FORK = 34,          /* exec: fork, so the child is born in the PID namespace joined by OP_SETNS;
                            this process sends MSG_PID and _exits, the child runs the rest of the plan */
  OP_HOOK_SYNC = 35,     /* send MSG_HOOKS, wait MSG_HOOKS_DONE: the parent runs prestart/createRuntime hooks */
  OP_RUN_HOOK = 36,      /* ints: timeout s (0 none), argc, envc  strs: path, argv..., env...
                            blob: state JSON up to `"pid":` — fork, exec the hook, state on stdin, wait */
  OP_CHROOT = 45,        /* strs: new root — chroot(2) for a container without a mount namespace */
  OP_JOIN_KEYRING = 46,  /* strs: name — keyctl(KEYCTL_JOIN_SESSION_KEYRING): a new session keyring */
  /* 35-39 left free for ops other branches add */
  OP_LANDLOCK = 40,      /* ints: step, ...  — Landlock (landlock(7)), in three steps:
                            step 0 (create): ints[1] = handled LANDLOCK_ACCESS_FS_* (masked to the kernel's ABI)
                            step 1 (rule):   ints[1] = allowed access, ints[2] = flags (1: skip if absent)
                                             strs: path (inside the container, opened O_PATH)
                            step 2 (restrict): landlock_restrict_self; needs no_new_privs or CAP_SYS_ADMIN */
  OP_LSM_EXEC = 41,      /* ints: 0 AppArmor | 1 SELinux   strs: label — the LSM label the next execve takes
                            (/proc/thread-self/attr/apparmor/exec, else attr/exec) */
  OP__MAX
};

enum tsrun_msg {
  MSG_GO = 1,      /* parent → child: ids mapped (userns: cgroups joined); run the plan */
  MSG_ERROR = 2,   /* child → parent: op `index` failed with `err` */
  MSG_PTY = 3,     /* child → parent: SCM_RIGHTS carries the pty master */
  MSG_READY = 4,   /* child → parent: waiting before exec (OP_WAIT_START) */
  MSG_START = 5,   /* unused: `start` goes through the fifo of OP_WAIT_START */
  MSG_MOUNT_FD = 6, /* parent → child: SCM_RIGHTS carries a detached mount for OP_MOUNT_FD */
  MSG_ID_MAPPED = 7, /* parent → child before exec, CLONE_NEWUSER only: uid_map/gid_map are written */
  MSG_PID = 8,      /* child → parent (OP_FORK): `index` is the pid of the forked child, as the parent sees it */
  MSG_HOOKS = 9,     /* child → parent (OP_HOOK_SYNC): mounts done, before pivot_root: run the runtime-namespace hooks */
  MSG_HOOKS_DONE = 10 /* parent → child: they succeeded, go on (on failure the parent kills the child) */
};

struct sync_msg {
  uint32_t type;
  uint32_t index; /* op index for MSG_ERROR, pid for MSG_PID */
  int32_t err;    /* errno for MSG_ERROR */
  uint32_t pad;
};

/* op index of MSG_ERROR when the cloned child failed before the plan ran */
#define INDEX_EXEC 0xffffffffu    /* execveat of tsrun-init */
#define INDEX_ID_SWITCH 0xfffffffeu /* setgroups/setresgid/setresuid(0) in a new user namespace */

/* tsrun ⇄ tsrun-monitor (detached containers), over a SOCK_SEQPACKET pair on the monitor's fd 3 */
enum tsrun_mon_msg {
  MON_CLONE = 1, /* tsrun → monitor: flags, tty, pid = N of --preserve-fds; SCM_RIGHTS: init memfd, plan memfd, sync (child end), [cgroup2 dir], the caller's N fds */
  MON_PID = 2,   /* monitor → tsrun: pid of the cloned init, or err */
  MON_PTY = 3,   /* tsrun → monitor: SCM_RIGHTS: the pty master to log from */
};

struct mon_msg {
  uint32_t type;
  uint32_t tty;
  uint64_t flags;
  int32_t pid;
  int32_t err;
};

/* init's exit code when it failed before exec (the parent reports the op instead) */
#define INIT_FAILED 125

#endif
