/*
 * Clone the container's first process and exec tsrun-init in it. Shared by the addon
 * (foreground containers, OCI create) and tsrun-monitor (detached containers), so both
 * start a container the same way.
 */
#ifndef TSRUN_SPAWN_H
#define TSRUN_SPAWN_H
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <linux/close_range.h>
#include <linux/sched.h>

#include "protocol.h"

#ifndef CLONE_INTO_CGROUP
#define CLONE_INTO_CGROUP 0x200000000ULL
#endif

/* clone3(2)'s argument, spelled out: glibc 2.36 has no wrapper and the uapi header may be older. */
struct tsrun_clone_args {
  uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls, set_tid, set_tid_size, cgroup;
};

/* What the cloned child needs; it lives on the parent's stack (the parent waits). */
struct tsrun_spawn_args {
  uint64_t clone_flags;
  int init_fd, plan_fd, sync_fd;
  const int *stdio;
  /* --preserve-fds N: the caller's fds 3..3+N-1 stay 3..3+N-1; sync and plan move up by N */
  int npreserve;
  /* where those N fds are in this process: NULL for 3..3+N-1 (the addon, which runs in the
   * caller's process), else an array (tsrun-monitor, which received them over its socket) */
  const int *preserve_src;
};

#define TSRUN_MAX_PRESERVE 64

/*
 * The child, from clone to execveat. Only async-signal-safe calls (the caller may be
 * multithreaded: design.md trap 4); it never returns on success. The fds are moved into
 * place (0-2 stdio, 3 sync, 4 plan) and tsrun-init is exec'd from `init_fd`, a sealed memfd.
 */
static int tsrun_spawn_child(void *p) {
  const struct tsrun_spawn_args *a = (const struct tsrun_spawn_args *)p;
  /* Targets: 0-2 stdio, 3..3+N-1 the caller's own fds 3.. (--preserve-fds), then sync and
   * plan. Move every source fd above the targets first, so no dup2 clobbers another source. */
  const int n = a->npreserve, total = 5 + n, sync = 3 + n;
  int src[5 + TSRUN_MAX_PRESERVE];
  int hi[5 + TSRUN_MAX_PRESERVE];
  src[0] = a->stdio[0], src[1] = a->stdio[1], src[2] = a->stdio[2];
  for (int i = 0; i < n; i++) src[3 + i] = a->preserve_src ? a->preserve_src[i] : 3 + i;
  src[sync] = a->sync_fd, src[sync + 1] = a->plan_fd;
  for (int i = 0; i < total; i++) {
    hi[i] = fcntl(src[i], F_DUPFD_CLOEXEC, total + 10);
    if (hi[i] < 0) _exit(INIT_FAILED);
  }
  /* The init's memfd too: tsrun-monitor receives its fds at low numbers (6 and up), which
   * the targets reach once N >= 2, and a dup2 onto it would exec the wrong file. */
  const int init_fd = fcntl(a->init_fd, F_DUPFD_CLOEXEC, total + 10);
  if (init_fd < 0) _exit(INIT_FAILED);
  /* dup2 gives clean copies without close-on-exec (Node marks 0-2 CLOEXEC: trap 1). */
  for (int i = 0; i < total; i++)
    if (dup2(hi[i], i) < 0) _exit(INIT_FAILED);
  syscall(SYS_close_range, total, ~0U, CLOSE_RANGE_CLOEXEC);
  if (a->clone_flags & CLONE_NEWUSER) {
    /* In a new user namespace this process is still host uid 0, which the namespace does
     * not map: an execve now would drop every capability (capabilities(7): only the
     * namespace's own root keeps them across execve), leaving tsrun-init unable to mount
     * anything. So wait for the parent's maps (MSG_ID_MAPPED), take uid/gid 0 *of the
     * namespace* with raw syscalls (glibc's would signal threads that do not exist here),
     * drop the host's supplementary groups, then exec as the namespace's root. */
    struct sync_msg m;
    ssize_t r;
    do r = read(sync, &m, sizeof m);
    while (r < 0 && errno == EINTR);
    if (r != (ssize_t)sizeof m || m.type != MSG_ID_MAPPED) _exit(INIT_FAILED);
    if (syscall(SYS_setgroups, 0, 0) < 0 || syscall(SYS_setresgid, 0, 0, 0) < 0 || syscall(SYS_setresuid, 0, 0, 0) < 0) {
      struct sync_msg e = {MSG_ERROR, INDEX_ID_SWITCH, errno, 0};
      ssize_t ignored = write(sync, &e, sizeof e);
      (void)ignored;
      _exit(INIT_FAILED);
    }
  }
  char arg0[] = "tsrun-init", arg1[] = "--tsrun-init-v1", arg2[4] = {0};
  /* the init learns where its sync and plan fds are: 3+N and 4+N */
  if (n >= 10) arg2[0] = (char)('0' + n / 10), arg2[1] = (char)('0' + n % 10);
  else arg2[0] = (char)('0' + n);
  char *argv[] = {arg0, arg1, n ? arg2 : 0, 0};
  char *envp[] = {0};
  syscall(SYS_execveat, init_fd, "", argv, envp, AT_EMPTY_PATH);
  struct sync_msg m = {MSG_ERROR, INDEX_EXEC, errno, 0};
  ssize_t ignored = write(sync, &m, sizeof m);
  (void)ignored;
  _exit(INIT_FAILED);
}

#if defined(__x86_64__)
/*
 * clone3 that runs fn(arg) on the stack given in the clone_args: a child sharing our memory
 * (CLONE_VM) must not return through the caller's stack frames, and glibc 2.36 offers no
 * clone3 wrapper. Returns the child's pid or -errno; the child exits with fn's result.
 * Registers: the syscall clobbers rax, rcx and r11 only, so r8/r9 carry fn and arg across.
 */
#define TSRUN_HAVE_CLONE3_ON_STACK 1
#ifdef __cplusplus
extern "C"
#endif
long tsrun_clone3_on_stack(struct tsrun_clone_args *ca, size_t size, int (*fn)(void *), void *arg);
__asm__(
    ".text\n"
    ".globl tsrun_clone3_on_stack\n"
    ".hidden tsrun_clone3_on_stack\n"
    ".type tsrun_clone3_on_stack,@function\n"
    "tsrun_clone3_on_stack:\n"
    "  mov %rdx, %r8\n"
    "  mov %rcx, %r9\n"
    "  mov $435, %eax\n" /* __NR_clone3 */
    "  syscall\n"
    "  test %rax, %rax\n"
    "  jz 1f\n"
    "  ret\n"
    "1:\n"
    "  xor %ebp, %ebp\n"
    "  mov %r9, %rdi\n"
    "  call *%r8\n"
    "  mov %eax, %edi\n"
    "  mov $60, %eax\n" /* __NR_exit */
    "  syscall\n"
    "  hlt\n"
    ".size tsrun_clone3_on_stack, .-tsrun_clone3_on_stack\n");
#endif

/*
 * Returns the child's pid, or -1 with errno.
 *
 * `cgroup_fd` >= 0: a cgroup2 directory the child is born in (clone3 CLONE_INTO_CGROUP,
 * Linux 5.7). Moving a process later through cgroup.procs takes the kernel's global
 * threadgroup lock, whose first writer waits for an RCU grace period (~10 ms here on each
 * `tsrun run`); a child born in its cgroup never moves.
 *
 * Without a user namespace the child shares our memory until it execs (CLONE_VM|CLONE_VFORK,
 * as posix_spawn does): copying the page tables of a 50 MB Node process, then tearing the
 * copy down at execve, costs milliseconds that a container start need not pay. Every signal
 * stays blocked meanwhile, so no handler of ours runs in the child; tsrun-init restores the
 * dispositions and the empty mask first thing. A new user namespace needs the fork-like
 * clone: its child waits for the parent to write the id maps before it execs.
 */
static inline pid_t tsrun_spawn_init_from(uint64_t clone_flags, int init_fd, int plan_fd, int sync_fd,
                                          const int stdio[3], int cgroup_fd, int npreserve, const int *preserve_src) {
  struct tsrun_spawn_args args = {clone_flags, init_fd, plan_fd, sync_fd, stdio, npreserve, preserve_src};
  struct tsrun_clone_args ca;
  memset(&ca, 0, sizeof ca);
  ca.flags = clone_flags | (cgroup_fd >= 0 ? CLONE_INTO_CGROUP : 0);
  ca.exit_signal = SIGCHLD;
  ca.cgroup = cgroup_fd >= 0 ? (uint64_t)cgroup_fd : 0;
#ifdef TSRUN_HAVE_CLONE3_ON_STACK
  if (!(clone_flags & CLONE_NEWUSER)) {
    /* the child's stack: ours is suspended under CLONE_VFORK until the child execs or exits */
    char stack[32768] __attribute__((aligned(16)));
    ca.flags |= CLONE_VM | CLONE_VFORK;
    ca.stack = (uint64_t)(uintptr_t)stack;
    ca.stack_size = sizeof stack;
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    long r = tsrun_clone3_on_stack(&ca, sizeof ca, tsrun_spawn_child, &args);
    pthread_sigmask(SIG_SETMASK, &old, 0);
    if (r != -ENOSYS) {
      if (r < 0) {
        errno = (int)-r;
        return -1;
      }
      return (pid_t)r;
    }
    /* no clone3 (Linux < 5.3): the fork-like clone below */
    ca.flags &= ~(uint64_t)(CLONE_VM | CLONE_VFORK);
    ca.stack = ca.stack_size = 0;
  }
#endif
  /* Raw clone without a new stack behaves like fork(): a copy of the calling thread only.
   * The namespace flags go here, not through unshare, which a multithreaded process may
   * not call for CLONE_NEWUSER. */
  pid_t pid;
  if (cgroup_fd >= 0)
    pid = (pid_t)syscall(SYS_clone3, &ca, sizeof ca);
  else
    pid = (pid_t)syscall(SYS_clone, (unsigned long)(clone_flags | SIGCHLD), 0, 0, 0, 0);
  if (pid != 0) return pid;
  tsrun_spawn_child(&args);
  _exit(INIT_FAILED);
}

static inline pid_t tsrun_spawn_init_preserving(uint64_t clone_flags, int init_fd, int plan_fd, int sync_fd,
                                                const int stdio[3], int cgroup_fd, int npreserve) {
  return tsrun_spawn_init_from(clone_flags, init_fd, plan_fd, sync_fd, stdio, cgroup_fd, npreserve, 0);
}

static inline pid_t tsrun_spawn_init(uint64_t clone_flags, int init_fd, int plan_fd, int sync_fd,
                                     const int stdio[3], int cgroup_fd) {
  return tsrun_spawn_init_preserving(clone_flags, init_fd, plan_fd, sync_fd, stdio, cgroup_fd, 0);
}

#endif
