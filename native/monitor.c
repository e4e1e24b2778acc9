/*
 * tsrun-monitor: one per detached container (`tsrun run -d`). It is the container's parent:
 * it clones the init (as the addon does for foreground runs), holds the container's stdout
 * and stderr (or its pty), appends them to a json-file log, reaps the container and records
 * how it ended. It outlives the tsrun that started it — the daemonless form of docker's
 * live-restore (workshop control 2.13): no tsrun process needs to run for the container to.
 *
 *   tsrun-monitor [--max-size BYTES] [--max-file N] LOG-FILE EXIT-FILE [COMMAND ARG...]
 *                                          (fd 3: control socket from tsrun, see protocol.h;
 *                                          fd 4: the container's reaper lock, see below)
 *
 * --max-size/--max-file are docker's json-file log options: once the log would pass
 * BYTES it is renamed LOG-FILE.1 (older ones shift up to LOG-FILE.<N-1>, the oldest is
 * dropped), or truncated when N is 1. Without them the log grows as docker's does.
 *
 * Static and small on purpose (issue 6 asks < 1 MiB resident): no Node, no allocation.
 *
 * Two processes (issue 12.6). A monitor killed outright (SIGKILL, an OOM kill) would take the
 * container's exit status and output with it: its init would be reparented to pid 1, which
 * reaps it for nobody, and its stdout would lose its only reader (EPIPE). So the process
 * tsrun starts is a *keeper*: a child subreaper (PR_SET_CHILD_SUBREAPER, prctl(2)) that forks
 * the monitor proper and keeps a copy of the container's output pipes (or pty master) without
 * reading them. While the monitor lives, the keeper only waits. When the monitor dies
 * without having recorded the exit, the init is reparented to the keeper (its nearest
 * subreaper ancestor), whose pipe ends kept the container's writes from failing: the keeper
 * goes on logging, reaps the init and writes exit.json. A killed keeper costs nothing: the
 * monitor, reparented, goes on alone and then runs the on-exit command itself. Only both
 * killed lose the container (tsrun reports that: docs/live-restore.md).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "protocol.h"
#include "spawn.h"

#define CTL_FD 3
/* flock(2)ed by tsrun (docs/state.md): while the monitor holds it, `rm` and `system prune`
 * know the exit is not recorded yet. Kept open until exit.json is written; the kernel drops
 * the lock when the last fd closes, so a monitor killed outright releases it too. */
#define REAPER_FD 4
#define CHUNK 16384 /* docker's json-file splits long lines at 16 KiB too */

static int log_fd = -1;
static const char *log_path;
static unsigned long long log_size, max_size; /* max_size 0: no rotation */
static unsigned max_file = 1;

/* Docker's json-file rotation: shift LOG.1.. up, LOG becomes LOG.1, a new LOG starts. A
 * failing rename (disk full, read-only) keeps writing to the same file: the container must
 * never stop because its log cannot rotate. */
static void rotate(void) {
  char from[4200], to[4200];
  if (max_file > 1) {
    for (unsigned k = max_file - 1; k >= 1; k--) {
      if (k == 1) snprintf(from, sizeof from, "%s", log_path);
      else snprintf(from, sizeof from, "%s.%u", log_path, k - 1);
      snprintf(to, sizeof to, "%s.%u", log_path, k);
      if (rename(from, to) < 0 && errno != ENOENT && k == 1) return;
    }
  }
  int fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_TRUNC | O_CLOEXEC, 0640);
  if (fd < 0) return;
  close(log_fd);
  log_fd = fd;
  log_size = 0;
}

struct stream {
  const char *name;
  int fd;
  char buf[CHUNK];
  size_t len;
};

static void now_rfc3339(char *out, size_t n) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  struct tm tm;
  gmtime_r(&ts.tv_sec, &tm);
  size_t k = strftime(out, n, "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(out + k, n - k, ".%09ldZ", ts.tv_nsec);
}

static void write_all(int fd, const char *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return; /* log full or gone: keep the container running regardless */
    }
    p += w;
    n -= (size_t)w;
  }
}

/* One json-file record: {"log":"…","stream":"stdout","time":"…"} */
static void emit(const char *stream, const char *data, size_t n) {
  static char out[CHUNK * 6 + 256];
  size_t o = 0;
  o += (size_t)snprintf(out, sizeof out, "{\"log\":\"");
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)data[i];
    if (c == '"' || c == '\\') {
      out[o++] = '\\';
      out[o++] = (char)c;
    } else if (c == '\n') {
      out[o++] = '\\';
      out[o++] = 'n';
    } else if (c == '\r') {
      out[o++] = '\\';
      out[o++] = 'r';
    } else if (c == '\t') {
      out[o++] = '\\';
      out[o++] = 't';
    } else if (c < 0x20) {
      o += (size_t)snprintf(out + o, sizeof out - o, "\\u%04x", c);
    } else {
      out[o++] = (char)c;
    }
  }
  char ts[64];
  now_rfc3339(ts, sizeof ts);
  o += (size_t)snprintf(out + o, sizeof out - o, "\",\"stream\":\"%s\",\"time\":\"%s\"}\n", stream, ts);
  if (max_size && log_size > 0 && log_size + o > max_size) rotate();
  write_all(log_fd, out, o);
  log_size += o;
}

/* Emit complete lines; keep a partial one until it completes, fills the buffer or ends. */
static int pump(struct stream *s) {
  ssize_t r = read(s->fd, s->buf + s->len, sizeof s->buf - s->len);
  if (r < 0 && (errno == EINTR || errno == EAGAIN)) return 0;
  if (r <= 0) { /* EOF, or EIO from a pty master whose last slave closed */
    if (s->len) emit(s->name, s->buf, s->len);
    s->len = 0;
    close(s->fd);
    s->fd = -1;
    return -1;
  }
  s->len += (size_t)r;
  size_t start = 0;
  for (size_t i = 0; i < s->len; i++) {
    if (s->buf[i] == '\n') {
      emit(s->name, s->buf + start, i + 1 - start);
      start = i + 1;
    }
  }
  if (start == 0 && s->len == sizeof s->buf) {
    emit(s->name, s->buf, s->len);
    start = s->len;
  }
  memmove(s->buf, s->buf + start, s->len - start);
  s->len -= start;
  return 0;
}

/* One message of `len` bytes and the fds it carries (SCM_RIGHTS, unix(7)): at most `maxfds`
 * are kept, any more are closed, so none leaks into the container. */
static int recv_with_fds(int sock, void *msg, size_t len, int *fds, int maxfds) {
  struct iovec iov = {msg, len};
  union {
    /* MON_CLONE: init, plan, sync, the cgroup dir and up to TSRUN_MAX_PRESERVE of the caller's */
    char buf[CMSG_SPACE(sizeof(int) * (4 + TSRUN_MAX_PRESERVE))];
    struct cmsghdr align;
  } u;
  struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof u.buf};
  ssize_t r;
  do r = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);
  while (r < 0 && errno == EINTR);
  if (r != (ssize_t)len) return -1;
  int n = 0;
  for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    int k = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
    for (int i = 0; i < k; i++) {
      int fd;
      memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
      if (n < maxfds) fds[n++] = fd;
      else close(fd);
    }
  }
  return n;
}

static void write_exit(const char *path, int status) {
  char tmp[4096], ts[64], body[256];
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  now_rfc3339(ts, sizeof ts);
  int n = WIFSIGNALED(status) ? snprintf(body, sizeof body, "{\"signal\":%d,\"finishedAt\":\"%s\"}\n", WTERMSIG(status), ts)
                              : snprintf(body, sizeof body, "{\"code\":%d,\"finishedAt\":\"%s\"}\n", WEXITSTATUS(status), ts);
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return;
  write_all(fd, body, (size_t)n);
  fsync(fd);
  close(fd);
  rename(tmp, path); /* atomic: a reader sees the whole record or none */
}

/* keeper <-> monitor: the init's pid, with the output pipes' read ends (or later the pty master) */
struct kp_msg {
  int32_t pid;
  int32_t kind; /* 0: pipes (2 fds), 1: pty (1 fd) */
};

static void send_fds(int sock, const struct kp_msg *m, const int *fds, int n) {
  struct iovec iov = {(void *)m, sizeof *m};
  union {
    char buf[CMSG_SPACE(sizeof(int) * 2)];
    struct cmsghdr align;
  } u;
  memset(&u, 0, sizeof u);
  struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
  if (n > 0) {
    mh.msg_control = u.buf;
    mh.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)n);
    struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)n);
    memcpy(CMSG_DATA(c), fds, sizeof(int) * (size_t)n);
  }
  sendmsg(sock, &mh, MSG_NOSIGNAL);
}

/*
 * Logs the container's output and reaps it; returns its wait status. `ctl`: tsrun's control
 * socket (the monitor's, until tsrun is done), `keeper`: where a pty master is passed on
 * (-1 in the keeper); `exited`: the init was reaped already, with `status`. Returns -1 when
 * the status cannot be known. Every child is reaped: without a PID namespace, orphans of the
 * container come to the keeper, the subreaper.
 */
static int watch(pid_t pid, struct stream *s, int ctl, int keeper, int exited, int status) {
  /* Readable once the init exits (pidfd_open(2)): the exit is recorded at once, not at the
   * next poll timeout, so a reader does not find a dead init without its exit.json. */
  int pidfd = exited ? -1 : (int)syscall(SYS_pidfd_open, pid, 0);
  for (;;) {
    struct pollfd p[4] = {{s[0].fd, POLLIN, 0}, {s[1].fd, POLLIN, 0}, {ctl, POLLIN, 0}, {exited ? -1 : pidfd, POLLIN, 0}};
    int r = poll(p, 4, exited ? 100 : 500);
    if (r < 0 && errno != EINTR) break;
    for (int i = 0; i < 2; i++)
      if (s[i].fd >= 0 && (p[i].revents & (POLLIN | POLLHUP | POLLERR))) pump(&s[i]);
    if (ctl >= 0 && (p[2].revents & (POLLIN | POLLHUP | POLLERR))) {
      int pty = -1;
      struct mon_msg pm;
      int n = recv_with_fds(CTL_FD, &pm, sizeof pm, &pty, 1);
      if (n == 1 && pm.type == MON_PTY && s[0].fd < 0) {
        s[0].fd = pty; /* a pty merges stdout and stderr, as docker logs it */
        struct kp_msg km = {pid, 1};
        if (keeper >= 0) send_fds(keeper, &km, &pty, 1);
      } else {
        if (n == 1) close(pty);
        close(ctl); /* tsrun is done with us (or gone): the container goes on */
        ctl = -1;
      }
    }
    pid_t w;
    int st;
    while ((w = waitpid(-1, &st, WNOHANG | __WALL)) > 0)
      if (w == pid) {
        status = st;
        exited = 1;
      }
    if (w < 0 && errno == ECHILD && !exited) {
      exited = 1; /* reaped by someone else: its status is not ours to record */
      status = -1;
    }
    /* Done once the container exited and its output is drained (or has gone quiet: a
     * process outside a PID namespace could hold the pipe open forever). */
    if (exited && ((s[0].fd < 0 && s[1].fd < 0) || r == 0)) break;
  }
  if (ctl >= 0) close(ctl);
  if (pidfd >= 0) close(pidfd);
  for (int i = 0; i < 2; i++)
    if (s[i].fd >= 0 && s[i].len) emit(s[i].name, s[i].buf, s[i].len);
  return status;
}

/*
 * The keeper waits, for days maybe, running a few pages of code. Exec faulted in most of the
 * binary's text; dropping those page-table entries (madvise(2) MADV_DONTNEED: a read-only
 * file mapping refaults from the page cache) leaves it resident in what it touches: the
 * monitor and its keeper then cost less than the one monitor did before (performance.md).
 */
static void drop_text(void) {
  char buf[4096];
  int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0) return;
  buf[n] = '\0';
  for (char *line = buf; line && *line;) {
    char *next = strchr(line, '\n');
    if (next) *next++ = '\0';
    unsigned long a, b;
    char perms[5];
    /* ours only: read-only, private, backed by a file (a static binary maps nothing else) */
    if (sscanf(line, "%lx-%lx %4s", &a, &b, perms) == 3 && perms[1] == '-' && perms[3] == 'p' && strchr(line, '/'))
      madvise((void *)a, b - a, MADV_DONTNEED);
    line = next;
  }
}

/* run -d --rm: the work is done; become `tsrun rm --force ID`, which finds the exit record.
 * Nothing of tsrun's control socket or the reaper lock goes along. */
static int on_exit_command(int argc, char **argv) {
  if (argc <= 3) return 0;
  syscall(SYS_close_range, 3, ~0U, 0);
  execv(argv[3], argv + 3);
  return 127;
}

/* The monitor proper: clones the init, logs it, reaps it, records the exit. */
static int monitor(int argc, char **argv, int keeper, pid_t keeper_pid) {
  struct mon_msg m;
  /* init, plan, sync, the cgroup2 dir to be born in (optional), then the caller's fds for
   * --preserve-fds (run -d): `pid` of the message says how many, the last ones */
  int fds[4 + TSRUN_MAX_PRESERVE];
  int nfds = recv_with_fds(CTL_FD, &m, sizeof m, fds, 4 + TSRUN_MAX_PRESERVE);
  if (nfds < 3 || m.type != MON_CLONE) return 1;
  int npreserve = m.pid;
  if (npreserve < 0 || npreserve > TSRUN_MAX_PRESERVE || nfds - npreserve < 3 || nfds - npreserve > 4) return 1;
  int cgroup_fd = nfds - npreserve == 4 ? fds[3] : -1;
  int out[2] = {-1, -1}, err[2] = {-1, -1};
  int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
  if (!m.tty && (pipe2(out, O_CLOEXEC) < 0 || pipe2(err, O_CLOEXEC) < 0)) return 1;
  int stdio[3] = {devnull, m.tty ? devnull : out[1], m.tty ? devnull : err[1]};
  pid_t pid = tsrun_spawn_init_from(m.flags, fds[0], fds[1], fds[2], stdio, cgroup_fd, npreserve, fds + nfds - npreserve);
  int spawn_errno = errno;
  /* the keeper first: once tsrun has the pid, the container is in the state, and a monitor
   * killed from then on must find its keeper able to take over */
  if (pid > 0) {
    struct kp_msg km = {pid, 0};
    int rd[2] = {out[0], err[0]};
    send_fds(keeper, &km, rd, m.tty ? 0 : 2);
  }
  /* flags carries the monitor's own pid: tsrun records it beside the keeper's */
  struct mon_msg reply = {MON_PID, 0, (uint64_t)getpid(), pid < 0 ? -1 : pid, pid < 0 ? spawn_errno : 0};
  send(CTL_FD, &reply, sizeof reply, MSG_NOSIGNAL);
  for (int i = 0; i < nfds; i++) close(fds[i]);
  if (pid < 0) return 1;
  if (!m.tty) {
    close(out[1]);
    close(err[1]);
  }
  struct stream s[2] = {{"stdout", m.tty ? -1 : out[0], "", 0}, {"stderr", m.tty ? -1 : err[0], "", 0}};
  int status = watch(pid, s, CTL_FD, keeper, 0, 0);
  if (status >= 0) write_exit(argv[2], status);
  close(REAPER_FD); /* the keeper's copy of the lock goes when it exits right after us */
  /* the keeper runs the on-exit command once we are gone; without a keeper, we do */
  if (getppid() == keeper_pid) return 0;
  return on_exit_command(argc, argv);
}

int main(int argc, char **argv) {
  /* options first, so the on-exit COMMAND after EXIT-FILE keeps its own arguments */
  int bad = 0;
  while (argc > 2 && (strcmp(argv[1], "--max-size") == 0 || strcmp(argv[1], "--max-file") == 0)) {
    char *end;
    unsigned long long v = strtoull(argv[2], &end, 10);
    if (*argv[2] == '\0' || *end != '\0' || v == 0) bad = 1;
    else if (strcmp(argv[1], "--max-size") == 0) max_size = v;
    else max_file = v > 1000 ? 1000 : (unsigned)v;
    argv += 2;
    argc -= 2;
  }
  if (bad) argc = 0;
  if (argc < 3) {
    fprintf(stderr, "usage: tsrun-monitor [--max-size BYTES] [--max-file N] LOG-FILE EXIT-FILE [COMMAND ARG...] (started by tsrun run -d; COMMAND runs after the exit record, e.g. tsrun rm for run -d --rm)\n");
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  signal(SIGHUP, SIG_IGN);
  signal(SIGINT, SIG_IGN);
  fcntl(REAPER_FD, F_SETFD, FD_CLOEXEC); /* never into the container (EBADF when not given) */
  log_path = argv[1];
  log_fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
  if (log_fd < 0) return 1;
  struct stat lst;
  if (fstat(log_fd, &lst) == 0) log_size = (unsigned long long)lst.st_size;

  int kp[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, kp) < 0) return 1;
  /* orphans of the monitor's children come to us: the init, when the monitor dies */
  if (prctl(PR_SET_CHILD_SUBREAPER, 1) < 0) return 1;
  sigset_t chld;
  sigemptyset(&chld);
  sigaddset(&chld, SIGCHLD);
  pid_t keeper_pid = getpid();
  pid_t mon = fork();
  if (mon < 0) return 1;
  if (mon == 0) {
    close(kp[0]);
    return monitor(argc, argv, kp[1], keeper_pid);
  }
  /* the keeper: tsrun's control socket is the monitor's alone (tsrun must see it close if
   * the monitor dies before it answers) */
  close(kp[1]);
  close(CTL_FD);
  sigprocmask(SIG_BLOCK, &chld, NULL);
  int sfd = signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK);
  if (sfd < 0) return 1;
  drop_text();
  pid_t pid = -1;
  int held[2] = {-1, -1};
  int mon_status = 0, mon_done = 0, init_status = 0, init_reaped = 0;
  while (!mon_done) {
    struct pollfd p[2] = {{kp[0], POLLIN, 0}, {sfd, POLLIN, 0}};
    if (poll(p, 2, -1) < 0 && errno != EINTR) return 1;
    if (kp[0] >= 0 && (p[0].revents & POLLIN)) {
      struct kp_msg km;
      int got[2] = {-1, -1};
      int n = recv_with_fds(kp[0], &km, sizeof km, got, 2);
      if (n >= 0) {
        pid = km.pid;
        if (km.kind == 0 && n == 2 && held[0] < 0) {
          held[0] = got[0];
          held[1] = got[1];
        } else if (km.kind == 1 && n == 1 && held[0] < 0) {
          held[0] = got[0];
        } else {
          for (int i = 0; i < n; i++) close(got[i]);
        }
      }
    } else if (kp[0] >= 0 && (p[0].revents & (POLLHUP | POLLERR))) {
      close(kp[0]); /* the monitor is gone or done: only its exit is left to see */
      kp[0] = -1;
    }
    struct signalfd_siginfo si;
    while (read(sfd, &si, sizeof si) > 0) {
    }
    pid_t w;
    int st;
    while ((w = waitpid(-1, &st, WNOHANG | __WALL)) > 0) {
      if (w == mon) {
        mon_status = st;
        mon_done = 1;
      } else if (w == pid) {
        init_status = st; /* reparented to us when the monitor died, and already exited */
        init_reaped = 1;
      } /* else an orphan of the container (no PID namespace): reaped, nothing to record */
    }
  }
  if (kp[0] >= 0) close(kp[0]);
  if (WIFEXITED(mon_status)) {
    /* the monitor ran its course: it wrote exit.json (code 0), or failed before the clone */
    if (WEXITSTATUS(mon_status) != 0) return WEXITSTATUS(mon_status);
    close(REAPER_FD);
    return on_exit_command(argc, argv);
  }
  /* The monitor was killed. Had it recorded the exit already, only the on-exit command is
   * left; else the init is ours now: log what it still writes, reap it, record its exit. */
  if (access(argv[2], F_OK) == 0 || pid <= 0) {
    close(REAPER_FD);
    return on_exit_command(argc, argv);
  }
  sigprocmask(SIG_UNBLOCK, &chld, NULL);
  close(sfd);
  /* the monitor may have rotated the log: append to the current file */
  close(log_fd);
  log_fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
  if (log_fd >= 0 && fstat(log_fd, &lst) == 0) log_size = (unsigned long long)lst.st_size;
  struct stream s[2] = {{"stdout", held[0], "", 0}, {"stderr", held[1], "", 0}};
  int status = watch(pid, s, -1, -1, init_reaped, init_status);
  if (status >= 0) write_exit(argv[2], status);
  close(REAPER_FD);
  return on_exit_command(argc, argv);
}
