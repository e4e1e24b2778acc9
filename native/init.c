/*
 * tsrun-init: the container's first process until it execs the container's command.
 *
 * Built static (no loader, no libc from the container) and executed by the addon from a
 * sealed memfd, so /proc/<pid>/exe of this process is an anonymous read-only copy and never
 * a host binary (CVE-2019-5736). It is a small interpreter: it waits for the parent's GO,
 * reads the plan (native/protocol.h) from fd 4 and runs each operation in order; the first
 * failure is reported to the parent as {op index, errno} over fd 3 and ends the process.
 * The policy (what to mount, which capabilities...) is all decided in TypeScript.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <linux/close_range.h>
#include <linux/filter.h>
#include <linux/landlock.h>
#include <linux/mount.h>
#include <linux/openat2.h>
#include <linux/seccomp.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "protocol.h"

#define SYNC_FD sync_fd_n
/* 4 and 3 unless --preserve-fds N put the caller's fds on 3..3+N-1 (argv[2] = N) */
static int plan_fd_n = 4, sync_fd_n = 3;
#define PLAN_FD plan_fd_n
#define INIT_MARK "--tsrun-init-v1"

/* The container root while it is still a host path (before pivot_root): paths below
 * `root_prefix` are resolved with openat2(RESOLVE_IN_ROOT), so a symlink planted in an
 * image (e.g. /dev -> /host/etc) cannot redirect a mount or mkdir onto the host. */
static int root_fd = -1;
static char root_prefix[4096];
static size_t root_len;

struct op {
  int pre_fd; /* fd opened by the pre-pass (OP_WAIT_START, OP_SETNS), else -1 */
  uint32_t code;
  uint16_t nint, nstr;
  const uint64_t *ints;
  const uint8_t *blob;
  uint32_t bloblen;
  const char *strs[64];
};

static void sync_send(uint32_t type, uint32_t index, int err) {
  struct sync_msg m = {type, index, err, 0};
  ssize_t r;
  /* after `tsrun create` has exited nobody reads: no SIGPIPE for that */
  do r = send(SYNC_FD, &m, sizeof m, MSG_NOSIGNAL);
  while (r < 0 && errno == EINTR);
}

static int sync_recv(uint32_t want) {
  struct sync_msg m;
  ssize_t r;
  do r = read(SYNC_FD, &m, sizeof m);
  while (r < 0 && errno == EINTR);
  if (r != (ssize_t)sizeof m) return -1; /* parent gone: nothing to report to */
  return m.type == want ? 0 : -1;
}

static void fail(uint32_t index, int err) {
  sync_send(MSG_ERROR, index, err);
  _exit(INIT_FAILED);
}

/* Once OP_WAIT_START returns, the `tsrun create` that read SYNC_FD is long gone and `start`
 * only read the fifo: an error sent on SYNC_FD reaches nobody. The container's stderr is the
 * engine's (conmon, containerd-shim), which shows it to the user, so say it there, with the
 * shell's exit codes for a command that is missing (127) or cannot run (126), as engines and
 * runc report them. */
static int after_start;
/* The joined user namespace refuses setgroups(2) (its creator wrote "deny" to
 * /proc/PID/setgroups, as `unshare -r` does): OP_SETGROUPS then leaves the list empty. */
static int setgroups_denied;

/* The start fifo's write end, kept open (close-on-exec) from `start` until the command's
 * execve: `tsrun start` reads EOF once the command runs, or "f" if set-up after start failed
 * (a startContainer hook), and only then runs the poststart hooks (runtime.md steps 7-9). */
static int start_fd = -1;

/* a hook's failure as a negative "errno" (run_hook below) */
#define HOOK_EXITED 0x10000
#define HOOK_SIGNALED 0x20000

static void late_failure(const struct op *o, int err) {
  if (start_fd >= 0) {
    /* `start` may have stopped reading: EPIPE, not a SIGPIPE death, since this init exits next */
    sigset_t pipe;
    sigemptyset(&pipe);
    sigaddset(&pipe, SIGPIPE);
    sigprocmask(SIG_BLOCK, &pipe, NULL);
    ssize_t ignored = write(start_fd, "f", 1);
    (void)ignored;
  }
  char msg[512];
  int n;
  if (o->code == OP_RUN_HOOK) {
    n = err <= -HOOK_SIGNALED   ? snprintf(msg, sizeof msg, "tsrun: startContainer hook %s: killed by signal %d\n", o->strs[0], -err & 0xffff)
        : err <= -HOOK_EXITED   ? snprintf(msg, sizeof msg, "tsrun: startContainer hook %s: exit status %d\n", o->strs[0], -err & 0xffff)
        : err == ETIMEDOUT      ? snprintf(msg, sizeof msg, "tsrun: startContainer hook %s: timed out after %llu s, killed\n", o->strs[0], (unsigned long long)o->ints[0])
                                : snprintf(msg, sizeof msg, "tsrun: startContainer hook %s: %s\n", o->strs[0], strerror(err));
  } else n = o->code == OP_EXEC ? snprintf(msg, sizeof msg, "tsrun: exec \"%s\": %s\n", o->strs[0], strerror(err))
                             : snprintf(msg, sizeof msg, "tsrun: container set-up after start (op %u) failed: %s\n", o->code, strerror(err));
  if (n > 0) {
    ssize_t ignored = write(2, msg, (size_t)n < sizeof msg ? (size_t)n : sizeof msg - 1);
    (void)ignored;
  }
  if (o->code == OP_EXEC) _exit(err == ENOENT || err == ENOTDIR ? 127 : 126);
}

static const char *nullable(const char *s) { return s && *s ? s : NULL; }

static long xopenat2(int dirfd, const char *path, int flags, uint64_t resolve) {
  struct open_how how = {.flags = (uint64_t)flags | O_CLOEXEC, .mode = 0, .resolve = resolve};
  return syscall(SYS_openat2, dirfd, path, &how, sizeof how);
}

/* Relative part of `path` when it lies under the container root, else NULL. */
static const char *in_root(const char *path) {
  if (root_fd < 0 || strncmp(path, root_prefix, root_len) != 0) return NULL;
  if (path[root_len] == '\0') return ".";
  if (path[root_len] != '/') return NULL;
  const char *rel = path + root_len;
  while (*rel == '/') rel++;
  return *rel ? rel : ".";
}

/* Open `path` (O_PATH unless flags say otherwise), confined to the container root when under it. */
static int open_confined(const char *path, int flags) {
  const char *rel = in_root(path);
  if (rel) return (int)xopenat2(root_fd, rel, flags, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS);
  return open(path, flags | O_CLOEXEC);
}

/* A path the mount API can use for `path`: /proc/self/fd/N of a confined O_PATH fd. */
struct target {
  int fd;
  char buf[64];
  const char *path;
};

static int target_open(struct target *t, const char *path) {
  t->fd = -1;
  t->path = path;
  if (!in_root(path)) return 0;
  t->fd = open_confined(path, O_PATH);
  if (t->fd < 0) return -1;
  snprintf(t->buf, sizeof t->buf, "/proc/self/fd/%d", t->fd);
  t->path = t->buf;
  return 0;
}

static void target_close(struct target *t) {
  if (t->fd >= 0) close(t->fd);
}

/* Split `path` into an fd of its parent directory (confined) and its last component. */
static int open_parent(const char *path, const char **base) {
  char dir[4096];
  const char *slash = strrchr(path, '/');
  if (!slash || slash[1] == '\0') {
    errno = EINVAL;
    return -1;
  }
  size_t n = (size_t)(slash - path);
  if (n >= sizeof dir) {
    errno = ENAMETOOLONG;
    return -1;
  }
  memcpy(dir, path, n);
  dir[n] = '\0';
  if (n == 0) strcpy(dir, "/");
  *base = slash + 1;
  return open_confined(dir, O_PATH | O_DIRECTORY);
}

static int mkdir_p(const char *path, mode_t mode) {
  /* Most targets exist already (the image has /proc, /dev, ...): one lookup, not one per
   * component. Below the root, only the components under it can be missing. */
  int fd = open_confined(path, O_PATH | O_DIRECTORY);
  if (fd >= 0) {
    close(fd);
    return 0;
  }
  char buf[4096];
  size_t len = strlen(path);
  if (len >= sizeof buf) {
    errno = ENAMETOOLONG;
    return -1;
  }
  memcpy(buf, path, len + 1);
  while (len > 1 && buf[len - 1] == '/') buf[--len] = '\0';
  for (size_t i = in_root(buf) ? root_len + 1 : 1; i <= len; i++) {
    if (buf[i] != '/' && buf[i] != '\0') continue;
    if (buf[i - 1] == '/') continue; /* "//" */
    char saved = buf[i];
    buf[i] = '\0';
    const char *base;
    int dfd = open_parent(buf, &base);
    if (dfd < 0) return -1;
    int r = mkdirat(dfd, base, mode);
    int e = errno;
    close(dfd);
    if (r < 0 && e != EEXIST) {
      errno = e;
      return -1;
    }
    buf[i] = saved;
  }
  return 0;
}

static int mkfile(const char *path, mode_t mode) {
  int fd = open_confined(path, O_PATH);
  if (fd >= 0) {
    close(fd);
    return 0;
  }
  const char *base;
  int dfd = open_parent(path, &base);
  if (dfd < 0 && errno == ENOENT) {
    /* an image with no /etc (FROM scratch: one static binary, as docker's hello-world)
     * still gets /etc/hostname, /etc/hosts, /etc/resolv.conf: make the directory, 0755 as
     * runc does for a mount's parents, each component confined to the root as above */
    char dir[4096];
    size_t n = (size_t)(strrchr(path, '/') - path);
    if (n >= sizeof dir) return errno = ENAMETOOLONG, -1;
    memcpy(dir, path, n);
    dir[n] = '\0';
    if (mkdir_p(dir, 0755) < 0) return -1;
    dfd = open_parent(path, &base);
  }
  if (dfd < 0) return -1;
  fd = openat(dfd, base, O_CREAT | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, mode);
  int e = errno;
  close(dfd);
  if (fd < 0) {
    errno = e;
    return -1;
  }
  close(fd);
  return 0;
}

static int do_mount(const struct op *o) {
  struct target t;
  if (target_open(&t, o->strs[1]) < 0) return -1;
  int r = mount(nullable(o->strs[0]), t.path, nullable(o->strs[2]), (unsigned long)o->ints[0],
                nullable(o->strs[3]));
  int e = errno;
  target_close(&t);
  errno = e;
  return r;
}

/* A remount keeps the flags the kernel locked on the mount (nosuid, nodev, noexec when it
 * came from a less privileged namespace): mount(2) EPERM otherwise. */
static int remount_ro(const char *path, unsigned long extra) {
  struct statvfs sv;
  struct target t;
  if (target_open(&t, path) < 0) return -1;
  if (statvfs(t.path, &sv) < 0) {
    int e = errno;
    target_close(&t);
    errno = e;
    return -1;
  }
  unsigned long flags = MS_REMOUNT | MS_BIND | MS_RDONLY | extra;
  if (sv.f_flag & ST_NOSUID) flags |= MS_NOSUID;
  if (sv.f_flag & ST_NODEV) flags |= MS_NODEV;
  if (sv.f_flag & ST_NOEXEC) flags |= MS_NOEXEC;
  if (sv.f_flag & ST_NOATIME) flags |= MS_NOATIME;
  if (sv.f_flag & ST_NODIRATIME) flags |= MS_NODIRATIME;
  if (sv.f_flag & ST_RELATIME) flags |= MS_RELATIME;
  int r = mount(NULL, t.path, NULL, flags, NULL);
  int e = errno;
  target_close(&t);
  errno = e;
  return r;
}

static int mask_path(const char *path) {
  struct stat st;
  if (stat(path, &st) < 0) return errno == ENOENT ? 0 : -1;
  if (S_ISDIR(st.st_mode)) return mount("tmpfs", path, "tmpfs", MS_RDONLY, "size=0");
  return mount("/dev/null", path, NULL, MS_BIND, NULL);
}

static int pivot(const char *newroot) {
  if (chdir(newroot) < 0) return -1;
  /* pivot_root(".", ".") stacks the old root on top of the new one; detaching "." then
   * drops every host mount from this namespace (pivot_root(2), NOTES). */
  if (syscall(SYS_pivot_root, ".", ".") < 0) return -1;
  if (umount2(".", MNT_DETACH) < 0) return -1;
  if (root_fd >= 0) close(root_fd);
  root_fd = -1;
  return chdir("/");
}

static int set_root(const char *path) {
  size_t n = strlen(path);
  if (n >= sizeof root_prefix) {
    errno = ENAMETOOLONG;
    return -1;
  }
  int fd = open(path, O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return -1;
  if (root_fd >= 0) close(root_fd);
  root_fd = fd;
  memcpy(root_prefix, path, n + 1);
  while (n > 1 && root_prefix[n - 1] == '/') root_prefix[--n] = '\0';
  root_len = n;
  return 0;
}

static int send_fd(int fd, uint32_t type) {
  struct sync_msg m = {type, 0, 0, 0};
  struct iovec iov = {&m, sizeof m};
  union {
    char buf[CMSG_SPACE(sizeof(int))];
    struct cmsghdr align;
  } u;
  memset(&u, 0, sizeof u);
  struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof u.buf};
  struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int));
  memcpy(CMSG_DATA(c), &fd, sizeof fd);
  return sendmsg(SYNC_FD, &mh, 0) < 0 ? -1 : 0;
}

static int recv_fd(uint32_t type) {
  struct sync_msg m;
  struct iovec iov = {&m, sizeof m};
  union {
    char buf[CMSG_SPACE(sizeof(int))];
    struct cmsghdr align;
  } u;
  struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof u.buf};
  ssize_t r = recvmsg(SYNC_FD, &mh, MSG_CMSG_CLOEXEC);
  if (r != (ssize_t)sizeof m || m.type != type) {
    errno = EPROTO;
    return -1;
  }
  struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
  if (!c || c->cmsg_type != SCM_RIGHTS) {
    errno = EPROTO;
    return -1;
  }
  int fd;
  memcpy(&fd, CMSG_DATA(c), sizeof fd);
  return fd;
}

/* The pty comes from the container's own devpts instance (mounted newinstance), so the
 * container sees /dev/pts/0 and can never reach the host's ptys; the master goes to the
 * parent over the sync socket (the OCI console-socket model). */
static int console(uint16_t rows, uint16_t cols, int bind_console) {
  int master = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (master < 0) return -1;
  int unlock = 0, n = -1;
  if (ioctl(master, TIOCSPTLCK, &unlock) < 0 || ioctl(master, TIOCGPTN, &n) < 0) return -1;
  char path[64];
  snprintf(path, sizeof path, "/dev/pts/%d", n);
  int slave = open(path, O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (slave < 0) return -1;
  if (rows && cols) {
    struct winsize ws = {.ws_row = rows, .ws_col = cols};
    ioctl(slave, TIOCSWINSZ, &ws);
  }
  /* /dev/console is an empty file made by the rootfs steps; a failing bind is not fatal
   * for a shell but would hide a broken plan, so report it. */
  if (bind_console && mount(path, "/dev/console", NULL, MS_BIND, NULL) < 0) return -1;
  if (send_fd(master, MSG_PTY) < 0) return -1;
  close(master);
  if (setsid() < 0) return -1;
  if (ioctl(slave, TIOCSCTTY, 0) < 0) return -1;
  for (int i = 0; i < 3; i++)
    if (dup2(slave, i) < 0) return -1;
  if (slave > 2) close(slave);
  return 0;
}

static int loopback_up(void) {
  int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0) return -1;
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  strcpy(ifr.ifr_name, "lo");
  int r = ioctl(s, SIOCGIFFLAGS, &ifr);
  if (r == 0) {
    ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
    r = ioctl(s, SIOCSIFFLAGS, &ifr);
  }
  int e = errno;
  close(s);
  errno = e;
  return r;
}

static int capbset(uint64_t keep) {
  for (int cap = 0; cap < 64; cap++) {
    if (keep & (1ULL << cap)) continue;
    if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0) {
      if (errno == EINVAL) break; /* past CAP_LAST_CAP of this kernel */
      return -1;
    }
  }
  return 0;
}

static int capset_all(uint64_t eff, uint64_t perm, uint64_t inh, uint64_t amb) {
  struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
  struct __user_cap_data_struct d[2] = {
      {(uint32_t)eff, (uint32_t)perm, (uint32_t)inh},
      {(uint32_t)(eff >> 32), (uint32_t)(perm >> 32), (uint32_t)(inh >> 32)},
  };
  if (syscall(SYS_capset, &h, d) < 0) return -1;
  if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL) return -1;
  for (int cap = 0; cap < 64; cap++)
    if ((amb & (1ULL << cap)) && prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0) < 0) return -1;
  return 0;
}

static int write_file(const char *path, const char *content) {
  int fd = open_confined(path, O_WRONLY | O_TRUNC);
  if (fd < 0) return -1;
  size_t len = strlen(content);
  ssize_t r = write(fd, content, len);
  int e = errno;
  close(fd);
  if (r < 0) {
    errno = e;
    return -1;
  }
  if ((size_t)r != len) {
    errno = EIO;
    return -1;
  }
  return 0;
}

static const char *env_get(char *const *envp, const char *name) {
  size_t n = strlen(name);
  for (; *envp; envp++)
    if (strncmp(*envp, name, n) == 0 && (*envp)[n] == '=') return *envp + n + 1;
  return NULL;
}

/* execvpe(3) semantics without its allocation: search PATH from the container's own
 * environment, remember EACCES so "found but not executable" wins over "not found". */
static int exec_cmd(const char *file, char *const *argv, char *const *envp) {
  if (strchr(file, '/')) return execve(file, argv, envp);
  const char *path = env_get(envp, "PATH");
  if (!path) path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
  int saw_eacces = 0;
  char buf[4096];
  while (*path) {
    const char *end = strchr(path, ':');
    size_t dl = end ? (size_t)(end - path) : strlen(path);
    if (dl + 1 + strlen(file) + 1 <= sizeof buf) {
      memcpy(buf, path, dl);
      size_t o = dl;
      if (o == 0) buf[o++] = '.';
      buf[o++] = '/';
      strcpy(buf + o, file);
      execve(buf, argv, envp);
      if (errno == EACCES || errno == ENOEXEC) saw_eacces = errno;
      else if (errno != ENOENT && errno != ENOTDIR) return -1;
    }
    if (!end) break;
    path = end + 1;
  }
  errno = saw_eacces ? saw_eacces : ENOENT;
  return -1;
}

/* exec's entry into the container's PID namespace. setns(CLONE_NEWPID) only decides where
 * this process's children are born (pid_namespaces(7)), so fork: the child is the first
 * process of this exec inside the container, and it is already tsrun-init (non-dumpable,
 * a sealed memfd), never a copy of the host's node. This process, which stays outside,
 * tells tsrun the child's pid and exits; the child is reparented to tsrun, a child
 * subreaper (PR_SET_CHILD_SUBREAPER), or to the engine's (containerd's shim, conmon) when
 * tsrun exec --detach has gone. The child waits for that exit (the gate pipe reads EOF
 * then), so MSG_PID reaches tsrun before anything the child sends. */
static int fork_into_pidns(void) {
  int gate[2];
  if (pipe2(gate, O_CLOEXEC) < 0) return -1;
  pid_t pid = fork();
  if (pid < 0) {
    int e = errno;
    close(gate[0]);
    close(gate[1]);
    errno = e;
    return -1;
  }
  if (pid > 0) {
    struct sync_msg m = {MSG_PID, (uint32_t)pid, 0, 0};
    ssize_t r;
    do r = send(SYNC_FD, &m, sizeof m, MSG_NOSIGNAL);
    while (r < 0 && errno == EINTR);
    /* nobody to report to: the child must not run a command nobody will wait for */
    if (r != (ssize_t)sizeof m) {
      kill(pid, SIGKILL);
      _exit(INIT_FAILED);
    }
    _exit(0);
  }
  close(gate[1]);
  char c;
  ssize_t r;
  do r = read(gate[0], &c, 1);
  while (r < 0 && errno == EINTR);
  close(gate[0]);
  return 0;
}

/* OCI createContainer and startContainer hooks (runtime-spec config.md "POSIX-platform
 * Hooks"): both run "in the container namespace", so this init forks them, as runc's and
 * crun's inits do. createContainer runs before pivot_root (its path resolves on the host: a
 * host binary inside the container's namespaces, see docs/oci-runtime.md), startContainer
 * after `start`, with the container's credentials and seccomp filter, just before the
 * command (its path resolves in the container). The state goes on stdin with the pid as this
 * process sees it (runtime.md "State"); stdout and stderr are the container's stderr, where
 * engines show them. A failure is an errno, or HOOK_EXITED|code, HOOK_SIGNALED|signal as a
 * negative value, which the parent (or late_failure) words. */

static int64_t now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static int run_hook(const struct op *o) {
  const uint64_t *I = o->ints;
  uint64_t timeout = I[0];
  size_t argc = (size_t)I[1], envc = (size_t)I[2];
  if (o->nstr < 1 + argc + envc) {
    errno = EBADMSG;
    return -1;
  }
  char *argv[argc + 1], *envp[envc + 1];
  for (size_t i = 0; i < argc; i++) argv[i] = (char *)o->strs[1 + i];
  argv[argc] = NULL;
  for (size_t i = 0; i < envc; i++) envp[i] = (char *)o->strs[1 + argc + i];
  envp[envc] = NULL;
  /* the whole state is in the pipe before the fork: a hook that never reads stdin cannot
   * block this init, and no SIGPIPE handling is needed (it would survive into the command) */
  size_t cap = (size_t)o->bloblen + 24;
  char *state = mmap(NULL, cap, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (state == MAP_FAILED) return -1;
  memcpy(state, o->blob, o->bloblen);
  size_t n = o->bloblen + (size_t)snprintf(state + o->bloblen, 24, "%d}", (int)getpid());
  int in[2], ep[2];
  if (pipe2(in, O_CLOEXEC) < 0) return -1;
  /* written before anyone reads: a state larger than the pipe (1 MiB at most, pipe(7)
   * pipe-max-size) would block forever, so it is refused instead */
  if (n > 65536) fcntl(in[1], F_SETPIPE_SZ, (int)n);
  int capacity = fcntl(in[1], F_GETPIPE_SZ);
  if (capacity < 0 || (size_t)capacity < n) {
    close(in[0]);
    close(in[1]);
    errno = E2BIG;
    return -1;
  }
  size_t off = 0;
  while (off < n) {
    ssize_t w = write(in[1], state + off, n - off);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) {
      int e = errno;
      close(in[0]);
      close(in[1]);
      errno = w < 0 ? e : EPIPE;
      return -1;
    }
    off += (size_t)w;
  }
  close(in[1]);
  munmap(state, cap);
  if (pipe2(ep, O_CLOEXEC) < 0) {
    int e = errno;
    close(in[0]);
    errno = e;
    return -1;
  }
  pid_t pid = fork();
  if (pid == 0) {
    /* fds 3 and up (the sync socket, the start fifo, the root fd) close on exec: the hook
     * gets stdin (the state) and the container's stderr as stdout and stderr, nothing else */
    if (dup2(in[0], 0) < 0 || dup2(2, 1) < 0) _exit(127);
    syscall(SYS_close_range, 3, ~0U, CLOSE_RANGE_CLOEXEC);
    execve(o->strs[0], argv, envp);
    int e = errno;
    ssize_t ignored = write(ep[1], &e, sizeof e);
    (void)ignored;
    _exit(127);
  }
  int fe = errno;
  close(in[0]);
  close(ep[1]);
  if (pid < 0) {
    close(ep[0]);
    errno = fe;
    return -1;
  }
  int status = 0;
  int64_t deadline = timeout ? now_ms() + (int64_t)timeout * 1000 : 0;
  for (;;) {
    pid_t r = waitpid(pid, &status, timeout ? WNOHANG : 0);
    if (r == pid) break;
    if (r < 0 && errno != EINTR) {
      int e = errno;
      close(ep[0]);
      errno = e;
      return -1;
    }
    if (timeout && now_ms() >= deadline) {
      kill(pid, SIGKILL);
      while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
      }
      close(ep[0]);
      errno = ETIMEDOUT;
      return -1;
    }
    if (timeout) {
      struct timespec ts = {0, 5 * 1000 * 1000};
      nanosleep(&ts, NULL);
    }
  }
  int e = 0;
  ssize_t got = read(ep[0], &e, sizeof e);
  close(ep[0]);
  if (got == (ssize_t)sizeof e) {
    errno = e;
    return -1;
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return 0;
  errno = WIFEXITED(status) ? -(HOOK_EXITED | WEXITSTATUS(status)) : -(HOOK_SIGNALED | WTERMSIG(status));
  return -1;
}

static int self_fd_dir = -1; /* the host's /proc/self/fd, for OP_WAIT_START after OP_CHROOT */

/* Landlock (landlock(7)): an unprivileged LSM that lets a process restrict its own file
 * access; the domain is inherited by every child and can never be lifted. The plan sends
 * three kinds of OP_LANDLOCK: create the ruleset, add one rule per path (paths inside the
 * container: this runs after pivot_root, or after setns into the mount namespace for exec),
 * then restrict. The rights the plan asks for are masked to what this kernel's ABI knows,
 * so a newer tsrun on an older kernel still gets the best protection the kernel offers. */
#ifndef LANDLOCK_ACCESS_FS_TRUNCATE
#define LANDLOCK_ACCESS_FS_TRUNCATE (1ULL << 14)
#endif
#ifndef LANDLOCK_ACCESS_FS_IOCTL_DEV
#define LANDLOCK_ACCESS_FS_IOCTL_DEV (1ULL << 15)
#endif
/* the rights a rule on a non-directory may carry (landlock_add_rule(2): EINVAL otherwise) */
#define LANDLOCK_FILE_RIGHTS                                                                       \
  (LANDLOCK_ACCESS_FS_EXECUTE | LANDLOCK_ACCESS_FS_WRITE_FILE | LANDLOCK_ACCESS_FS_READ_FILE |     \
   LANDLOCK_ACCESS_FS_TRUNCATE | LANDLOCK_ACCESS_FS_IOCTL_DEV)
static int landlock_fd = -1;
static uint64_t landlock_handled;

static uint64_t landlock_abi_rights(int abi) {
  if (abi >= 5) return (1ULL << 16) - 1; /* + IOCTL_DEV (6.10) */
  if (abi >= 3) return (1ULL << 15) - 1; /* + TRUNCATE (6.2) */
  if (abi >= 2) return (1ULL << 14) - 1; /* + REFER (5.19) */
  return (1ULL << 13) - 1;               /* ABI 1 (5.13) */
}

static int landlock_op(const struct op *o) {
  const uint64_t *I = o->ints;
  if (o->nint < 1) return errno = EINVAL, -1;
  switch (I[0]) {
  case 0: { /* create */
    if (o->nint < 2) return errno = EINVAL, -1;
    /* ENOSYS: not built in; EOPNOTSUPP: built in but not enabled at boot (lsm=) */
    long abi = syscall(SYS_landlock_create_ruleset, NULL, 0, LANDLOCK_CREATE_RULESET_VERSION);
    if (abi < 0) return -1;
    /* only handled_access_fs: an 8-byte attribute every ABI accepts */
    struct { uint64_t handled_access_fs; } attr = {I[1] & landlock_abi_rights((int)abi)};
    long fd = syscall(SYS_landlock_create_ruleset, &attr, sizeof attr, 0);
    if (fd < 0) return -1;
    landlock_fd = (int)fd;
    landlock_handled = attr.handled_access_fs;
    return 0;
  }
  case 1: { /* rule */
    if (o->nint < 3 || landlock_fd < 0) return errno = EINVAL, -1;
    int fd = open(o->strs[0], O_PATH | O_CLOEXEC);
    if (fd < 0) return (errno == ENOENT && (I[2] & 1)) ? 0 : -1;
    struct stat st;
    if (fstat(fd, &st) < 0) {
      int e = errno;
      close(fd);
      return errno = e, -1;
    }
    uint64_t access = I[1] & landlock_handled;
    if (!S_ISDIR(st.st_mode)) access &= LANDLOCK_FILE_RIGHTS;
    int r = 0;
    if (access) {
      struct landlock_path_beneath_attr pb = {.allowed_access = access, .parent_fd = fd};
      r = (int)syscall(SYS_landlock_add_rule, landlock_fd, LANDLOCK_RULE_PATH_BENEATH, &pb, 0);
    }
    int e = errno;
    close(fd);
    errno = e;
    return r;
  }
  case 2: { /* restrict */
    if (landlock_fd < 0) return errno = EINVAL, -1;
    int r = (int)syscall(SYS_landlock_restrict_self, landlock_fd, 0);
    int e = errno;
    close(landlock_fd);
    landlock_fd = -1;
    errno = e;
    return r;
  }
  }
  return errno = EINVAL, -1;
}

/* The label the container's command gets at execve (AppArmor's change_onexec, SELinux's
 * setexeccon): written to this thread's own attr file, after pivot_root, so the container's
 * /proc is used. AppArmor has its own directory since 5.8 (attr/apparmor/exec), with the
 * shared attr/exec kept for older kernels and for SELinux. */
static int lsm_exec(uint64_t lsm, const char *label) {
  char buf[4096];
  int n = lsm == 0 ? snprintf(buf, sizeof buf, "exec %s", label) : snprintf(buf, sizeof buf, "%s", label);
  if (n < 0 || (size_t)n >= sizeof buf) return errno = ENAMETOOLONG, -1;
  int fd = -1;
  if (lsm == 0) fd = open("/proc/thread-self/attr/apparmor/exec", O_WRONLY | O_CLOEXEC);
  if (fd < 0 && (lsm != 0 || errno == ENOENT)) fd = open("/proc/thread-self/attr/exec", O_WRONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  ssize_t w = write(fd, buf, (size_t)n);
  int e = errno;
  close(fd);
  if (w < 0) return errno = e, -1;
  return w == n ? 0 : (errno = EIO, -1);
}

static int run_op(const struct op *o) {
  const uint64_t *I = o->ints;
  const char *const *S = o->strs;
  switch (o->code) {
  case OP_MOUNT:
    return do_mount(o);
  case OP_MKDIR:
    return mkdir_p(S[0], (mode_t)I[0]);
  case OP_MKFILE:
    return mkfile(S[0], (mode_t)I[0]);
  case OP_SYMLINK: {
    const char *base;
    int dfd = open_parent(S[1], &base);
    if (dfd < 0) return -1;
    int r = symlinkat(S[0], dfd, base);
    int e = errno;
    close(dfd);
    errno = e;
    return r < 0 && e == EEXIST ? 0 : r;
  }
  case OP_MKNOD: {
    const char *base;
    int dfd = open_parent(S[0], &base);
    if (dfd < 0) return -1;
    /* The spec's fileMode is the node's mode: runc creates nodes under umask 0, and the
     * engine's umask (inherited through tsrun) must not turn 0660 into 0640. */
    mode_t old = umask(0);
    int r = mknodat(dfd, base, (mode_t)I[0], (dev_t)I[1]);
    int e = errno;
    umask(old);
    if (r == 0 && o->nint >= 4) {
      /* linux.devices[].uid/gid (config-linux.md): the node was just made here, so it is no
       * link; AT_SYMLINK_NOFOLLOW all the same */
      r = fchownat(dfd, base, (uid_t)I[2], (gid_t)I[3], AT_SYMLINK_NOFOLLOW);
      e = errno;
    } else if (r < 0 && e == EEXIST) {
      r = 0;
    }
    close(dfd);
    errno = e;
    return r;
  }
  case OP_PIVOT_ROOT:
    return pivot(S[0]);
  case OP_UMOUNT:
    return umount2(S[0], (int)I[0]);
  case OP_CHDIR:
    return chdir(S[0]);
  case OP_SETHOSTNAME:
    return sethostname(S[0], strlen(S[0]));
  case OP_SETDOMAINNAME:
    return setdomainname(S[0], strlen(S[0]));
  case OP_SETRLIMIT: {
    struct rlimit rl = {(rlim_t)I[1], (rlim_t)I[2]};
    return setrlimit((int)I[0], &rl);
  }
  case OP_SETGROUPS: {
    /* runc skips setgroups in such a namespace too; the init dropped every host group before
     * it joined (OP_SETNS), so the container has none rather than host root's */
    if (setgroups_denied) return 0;
    gid_t g[o->nint ? o->nint : 1];
    for (int i = 0; i < o->nint; i++) g[i] = (gid_t)I[i];
    return setgroups(o->nint, g);
  }
  case OP_SETRESGID:
    return (int)syscall(SYS_setresgid, (gid_t)I[0], (gid_t)I[0], (gid_t)I[0]);
  case OP_SETRESUID:
    return (int)syscall(SYS_setresuid, (uid_t)I[0], (uid_t)I[0], (uid_t)I[0]);
  case OP_KEEPCAPS:
    return prctl(PR_SET_KEEPCAPS, (unsigned long)I[0], 0, 0, 0);
  case OP_CAPBSET:
    return capbset(I[0]);
  case OP_CAPSET:
    return capset_all(I[0], I[1], I[2], I[3]);
  case OP_NO_NEW_PRIVS:
    return prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
  case OP_SECCOMP: {
    struct sock_fprog prog = {(unsigned short)(o->bloblen / sizeof(struct sock_filter)),
                              (struct sock_filter *)o->blob};
    return (int)syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, (unsigned)I[0], &prog);
  }
  case OP_WRITE_FILE:
    return write_file(S[0], S[1]);
  case OP_CONSOLE:
    return console((uint16_t)I[0], (uint16_t)I[1], o->nint > 2 ? (int)I[2] : 1);
  case OP_SETSID:
    return setsid() < 0 ? -1 : 0;
  case OP_WAIT_START: {
    sync_send(MSG_READY, 0, 0);
    /* Blocks until `tsrun start` opens the fifo for reading (fifo(7)); the O_PATH fd
     * from the pre-pass still names the host file after pivot_root. */
    char p[64];
    snprintf(p, sizeof p, "/proc/self/fd/%d", o->pre_fd);
    int fd;
    do fd = open(p, O_WRONLY | O_CLOEXEC);
    while (fd < 0 && errno == EINTR);
    /* chrooted without a mount namespace of its own (OP_CHROOT) there is no /proc here: the
     * host's /proc/self/fd, opened by the pre-pass, reopens the fifo */
    if (fd < 0 && errno == ENOENT && self_fd_dir >= 0) {
      do fd = openat(self_fd_dir, p + sizeof "/proc/self/fd/" - 1, O_WRONLY | O_CLOEXEC);
      while (fd < 0 && errno == EINTR);
    }
    if (self_fd_dir >= 0) close(self_fd_dir);
    self_fd_dir = -1;
    if (fd < 0) return -1;
    ssize_t w = write(fd, "s", 1);
    int e = errno;
    if (w == 1) start_fd = fd;
    else close(fd);
    close(o->pre_fd);
    errno = e;
    return w == 1 ? 0 : -1;
  }
  case OP_SETNS: {
    int user = (int)I[0] == CLONE_NEWUSER;
    /* Host root's supplementary groups would follow into a user namespace that denies
     * setgroups (unmapped, still used by permission checks): dropped while it is allowed. */
    if (user && setgroups(0, NULL) < 0) return -1;
    int r = setns(o->pre_fd, (int)I[0]);
    int e = errno;
    close(o->pre_fd);
    errno = e;
    if (r < 0 || !user) return r;
    /* setns(2) gave every capability in that namespace, but this process is still host root,
     * unmapped there (the overflow uid); become its root, as runc's nsexec does after joining
     * (user namespaces without uid and gid 0 mapped fail here, EINVAL).
     * Only setgroups denied by the namespace (user_namespaces(7)) fails now with EPERM. */
    if (syscall(SYS_setresuid, (uid_t)0, (uid_t)0, (uid_t)0) < 0) return -1;
    /* the gid too: files created with an unmapped fsgid fail with EOVERFLOW */
    if (syscall(SYS_setresgid, (gid_t)0, (gid_t)0, (gid_t)0) < 0) return -1;
    if (setgroups(0, NULL) < 0) {
      if (errno != EPERM) return -1;
      setgroups_denied = 1;
    }
    return 0;
  }
  case OP_EXEC: {
    /* argv and envp are in the blob, argc + envc NUL-terminated strings: as many as the kernel
     * takes (ARG_MAX), so the arrays are mapped, not on this stack (a container's RLIMIT_STACK,
     * set earlier in the plan, may be small). */
    if (o->nint < 2 || o->nstr < 1 || I[0] == 0 || I[0] > o->bloblen || I[1] > o->bloblen) {
      errno = EBADMSG;
      return -1;
    }
    size_t argc = (size_t)I[0], envc = (size_t)I[1];
    char **v = mmap(NULL, (argc + envc + 2) * sizeof(char *), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (v == MAP_FAILED) return -1;
    const char *p = (const char *)o->blob, *end = p + o->bloblen;
    for (size_t i = 0; i < argc + envc; i++) {
      const char *nul = memchr(p, 0, (size_t)(end - p));
      if (!nul) {
        errno = EBADMSG;
        return -1;
      }
      v[i < argc ? i : i + 1] = (char *)p; /* argv[0..argc), NULL, envp[0..envc), NULL */
      p = nul + 1;
    }
    v[argc] = NULL;
    v[argc + envc + 1] = NULL;
    return exec_cmd(S[0], v, v + argc + 1);
  }
  case OP_LOOPBACK_UP:
    return loopback_up();
  case OP_UNSHARE:
    return unshare((int)I[0]);
  case OP_MOUNT_FD: {
    int fd = recv_fd(MSG_MOUNT_FD);
    if (fd < 0) return -1;
    struct target t;
    if (target_open(&t, S[0]) < 0) return -1;
    int r = (int)syscall(SYS_move_mount, fd, "", AT_FDCWD, t.path, MOVE_MOUNT_F_EMPTY_PATH);
    int e = errno;
    target_close(&t);
    close(fd);
    errno = e;
    return r;
  }
  case OP_REMOUNT_RO:
    return remount_ro(S[0], (unsigned long)I[0]);
  case OP_MASK_PATH:
    return mask_path(S[0]);
  case OP_SET_DUMPABLE:
    return prctl(PR_SET_DUMPABLE, (unsigned long)I[0], 0, 0, 0);
  case OP_OOM_SCORE_ADJ: {
    char v[32];
    snprintf(v, sizeof v, "%lld", (long long)(int64_t)I[0]);
    return write_file("/proc/self/oom_score_adj", v);
  }
  case OP_ROOT:
    return set_root(S[0]);
  case OP_LANDLOCK:
    return landlock_op(o);
  case OP_LSM_EXEC:
    return lsm_exec(o->nint ? I[0] : 0, S[0]);
  case OP_FORK:
    return fork_into_pidns();
  case OP_HOOK_SYNC:
    sync_send(MSG_HOOKS, 0, 0);
    if (sync_recv(MSG_HOOKS_DONE) < 0) {
      errno = ECANCELED;
      return -1;
    }
    return 0;
  case OP_RUN_HOOK:
    return run_hook(o);
  case OP_JOIN_KEYRING: {
    /* keyctl(2) KEYCTL_JOIN_SESSION_KEYRING = 1: a new anonymous-to-others keyring; a kernel
     * built without keys (ENOSYS) has nothing to share either */
    long r = syscall(SYS_keyctl, 1L, S[0]);
    return r < 0 && errno != ENOSYS ? -1 : 0;
  }
  case OP_CHROOT:
    /* No mount namespace of its own (the spec lists none, as runc allows): pivot_root would
     * swap the host's root, so only this process's root changes (chroot(2), runc's chroot()) */
    if (chdir(S[0]) < 0 || chroot(".") < 0) return -1;
    return chdir("/");
  }
  errno = ENOSYS;
  return -1;
}

/* Bounds-checked decoding: a malformed plan is reported as EBADMSG at its op index. */
static int decode(const uint8_t *p, size_t left, struct op *o, uint32_t *size) {
  if (left < sizeof(struct op_header)) return -1;
  struct op_header h;
  memcpy(&h, p, sizeof h);
  if (h.size < sizeof h || h.size > left || h.size % 8 || h.nstr > 64) return -1;
  size_t off = sizeof h;
  if (off + (size_t)h.nint * 8 > h.size) return -1;
  o->code = h.op;
  o->nint = h.nint;
  o->nstr = h.nstr;
  o->ints = (const uint64_t *)(p + off);
  off += (size_t)h.nint * 8;
  size_t padded = ((size_t)h.bloblen + 7) & ~(size_t)7;
  if (off + padded > h.size) return -1;
  o->blob = p + off;
  o->bloblen = h.bloblen;
  off += padded;
  for (int i = 0; i < h.nstr; i++) {
    const char *s = (const char *)p + off;
    const void *nul = memchr(s, 0, h.size - off);
    if (!nul) return -1;
    o->strs[i] = s;
    off = (size_t)((const uint8_t *)nul - p) + 1;
  }
  for (int i = h.nstr; i < 64; i++) o->strs[i] = "";
  o->pre_fd = -1;
  *size = h.size;
  return 0;
}

/* Paths that must be opened before the plan changes this process's view of the host:
 * the start fifo (a host path, used after pivot_root) and namespace files (setns into a
 * mount namespace changes what /proc/<pid> means). At most 16 per plan. */
#define MAX_PRE 16
static int pre_fds[MAX_PRE];
static uint32_t pre_index[MAX_PRE];
static int npre;

static void pre_open(const uint8_t *plan, size_t size, uint32_t nops) {
  size_t off = sizeof(struct plan_header);
  for (uint32_t i = 0; i < nops; i++) {
    struct op o;
    uint32_t sz;
    if (decode(plan + off, size - off, &o, &sz) < 0) fail(i, EBADMSG);
    if (o.code == OP_WAIT_START || o.code == OP_SETNS) {
      if (npre == MAX_PRE) fail(i, E2BIG);
      int fd = open(o.strs[0], (o.code == OP_WAIT_START ? O_PATH : O_RDONLY) | O_CLOEXEC);
      if (fd < 0) fail(i, errno);
      pre_fds[npre] = fd;
      pre_index[npre++] = i;
      if (o.code == OP_WAIT_START && self_fd_dir < 0) self_fd_dir = open("/proc/self/fd", O_PATH | O_DIRECTORY | O_CLOEXEC);
    }
    off += sz;
  }
}

static int pre_fd_for(uint32_t index) {
  for (int k = 0; k < npre; k++)
    if (pre_index[k] == index) return pre_fds[k];
  return -1;
}

int main(int argc, char **argv) {
  /* Anything but the addon's own invocation (e.g. a container script starting with
   * "#!/proc/self/exe", which resolves to this memfd) gets a refusal, not a runtime. */
  int npreserve = 0;
  if (argc == 3 && argv[2][0] >= '1' && argv[2][0] <= '9' && (!argv[2][1] || (argv[2][1] >= '0' && argv[2][1] <= '9' && !argv[2][2])))
    npreserve = argv[2][1] ? (argv[2][0] - '0') * 10 + (argv[2][1] - '0') : argv[2][0] - '0';
  if ((argc != 2 && !npreserve) || strcmp(argv[1], INIT_MARK) != 0) {
    static const char msg[] = "tsrun-init: this is tsrun's container init, not a command; refusing to run\n";
    ssize_t ignored = write(2, msg, sizeof msg - 1);
    (void)ignored;
    return 126;
  }
  /* Non-dumpable until execve resets it: container processes that lack CAP_SYS_PTRACE cannot
   * open /proc/<this pid>/exe or /proc/<this pid>/fd (ptrace access mode checks, proc(5)). */
  prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
  /* Node ignores SIGPIPE and ignored signals survive execve (signal(7)); a container must
   * start with default dispositions and an empty mask, as after a fresh fork+exec by a shell. */
  for (int s = 1; s < NSIG; s++) signal(s, SIG_DFL);
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, NULL);

  sync_fd_n = 3 + npreserve;
  plan_fd_n = 4 + npreserve;
  if (sync_recv(MSG_GO) < 0) _exit(INIT_FAILED);

  struct stat st;
  if (fstat(PLAN_FD, &st) < 0 || st.st_size < (off_t)sizeof(struct plan_header)) fail(0, EBADMSG);
  const uint8_t *plan = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, PLAN_FD, 0);
  if (plan == MAP_FAILED) fail(0, errno);
  close(PLAN_FD);
  /* No host fd may reach the container (CVE-2024-21626): only 0-2 and the sync socket
   * remain, and the sync socket closes itself on execve. */
  syscall(SYS_close_range, PLAN_FD, ~0U, 0);
  if (fcntl(SYNC_FD, F_SETFD, FD_CLOEXEC) < 0) fail(0, errno);

  struct plan_header ph;
  memcpy(&ph, plan, sizeof ph);
  if (ph.magic != TSRUN_PLAN_MAGIC || ph.version != TSRUN_PLAN_VERSION || ph.size != (uint32_t)st.st_size)
    fail(0, EBADMSG);
  pre_open(plan, ph.size, ph.nops);
  size_t off = sizeof ph;
  for (uint32_t i = 0; i < ph.nops; i++) {
    struct op o;
    uint32_t size;
    if (decode(plan + off, ph.size - off, &o, &size) < 0) fail(i, EBADMSG);
    o.pre_fd = pre_fd_for(i);
    if (run_op(&o) < 0) {
      int e = errno;
      if (after_start) late_failure(&o, e);
      fail(i, e);
    }
    if (o.code == OP_WAIT_START) after_start = 1;
    off += size;
  }
  /* A plan must end in OP_EXEC; reaching here means it did not. */
  fail(ph.nops, ENOEXEC);
}
