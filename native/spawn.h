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

/*
 * Returns the child's pid, or -1 with errno. In the child only async-signal-safe calls
 * are made (the caller may be multithreaded: design.md trap 4): the fds are moved into
 * place (0-2 stdio, 3 sync, 4 plan) and tsrun-init is exec'd from `init_fd`, a sealed memfd.
 *
 * `cgroup_fd` >= 0: a cgroup2 directory the child is born in (clone3 CLONE_INTO_CGROUP,
 * Linux 5.7). Moving a process later through cgroup.procs takes the kernel's global
 * threadgroup lock, whose first writer waits for an RCU grace period (~10 ms here on each
 * `tsrun run`); a child born in its cgroup never moves.
 */
static inline pid_t tsrun_spawn_init(uint64_t clone_flags, int init_fd, int plan_fd, int sync_fd,
                                     const int stdio[3], int cgroup_fd) {
  /* Raw clone without a new stack behaves like fork(): a copy of the calling thread only.
   * The namespace flags go here, not through unshare, which a multithreaded process may
   * not call for CLONE_NEWUSER. */
  pid_t pid;
  if (cgroup_fd >= 0) {
    struct tsrun_clone_args ca = {0};
    ca.flags = clone_flags | CLONE_INTO_CGROUP;
    ca.exit_signal = SIGCHLD;
    ca.cgroup = (uint64_t)cgroup_fd;
    pid = (pid_t)syscall(SYS_clone3, &ca, sizeof ca);
  } else {
    pid = (pid_t)syscall(SYS_clone, (unsigned long)(clone_flags | SIGCHLD), 0, 0, 0, 0);
  }
  if (pid != 0) return pid;
  /* Move every source fd above the targets first, so no dup2 clobbers another source. */
  int src[5] = {stdio[0], stdio[1], stdio[2], sync_fd, plan_fd};
  int hi[5];
  for (int i = 0; i < 5; i++) {
    hi[i] = fcntl(src[i], F_DUPFD_CLOEXEC, 10);
    if (hi[i] < 0) _exit(INIT_FAILED);
  }
  /* dup2 gives clean copies without close-on-exec (Node marks 0-2 CLOEXEC: trap 1). */
  for (int i = 0; i < 5; i++)
    if (dup2(hi[i], i) < 0) _exit(INIT_FAILED);
  syscall(SYS_close_range, 5, ~0U, CLOSE_RANGE_CLOEXEC);
  if (clone_flags & CLONE_NEWUSER) {
    /* In a new user namespace this process is still host uid 0, which the namespace does
     * not map: an execve now would drop every capability (capabilities(7): only the
     * namespace's own root keeps them across execve), leaving tsrun-init unable to mount
     * anything. So wait for the parent's maps (MSG_ID_MAPPED), take uid/gid 0 *of the
     * namespace* with raw syscalls (glibc's would signal threads that do not exist here),
     * drop the host's supplementary groups, then exec as the namespace's root. */
    struct sync_msg m;
    ssize_t r;
    do r = read(3, &m, sizeof m);
    while (r < 0 && errno == EINTR);
    if (r != (ssize_t)sizeof m || m.type != MSG_ID_MAPPED) _exit(INIT_FAILED);
    if (syscall(SYS_setgroups, 0, 0) < 0 || syscall(SYS_setresgid, 0, 0, 0) < 0 || syscall(SYS_setresuid, 0, 0, 0) < 0) {
      struct sync_msg e = {MSG_ERROR, INDEX_ID_SWITCH, errno, 0};
      ssize_t ignored = write(3, &e, sizeof e);
      (void)ignored;
      _exit(INIT_FAILED);
    }
  }
  char arg0[] = "tsrun-init", arg1[] = "--tsrun-init-v1";
  char *argv[] = {arg0, arg1, 0};
  char *envp[] = {0};
  syscall(SYS_execveat, init_fd, "", argv, envp, AT_EMPTY_PATH);
  struct sync_msg m = {MSG_ERROR, INDEX_EXEC, errno, 0};
  ssize_t ignored = write(3, &m, sizeof m);
  (void)ignored;
  _exit(INIT_FAILED);
}

#endif
