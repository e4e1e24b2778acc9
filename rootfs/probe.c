/*
 * probe: a static witness run inside containers by the tests. It reports what the kernel
 * says about the process it runs as, one JSON object per line, so tests assert on the
 * kernel's own answers rather than on what tsrun meant to do.
 *
 *   probe info                 identity, id maps, namespaces, fds, status fields, rlimits, mounts
 *   probe show                 the same for people: ids and maps, capabilities by name,
 *                              no_new_privs, seccomp mode, limits, read-only mounts, masked
 *                              paths (the built-in `probe` image's default command)
 *   probe write PATH           create+write PATH               → {"op":"write","errno":...}
 *   probe open-write PATH      open(PATH, O_WRONLY) only       → {"op":"open-write","errno":...}
 *   probe reopen-write PATH S  open(PATH, O_PATH), wait S seconds, reopen it through
 *                              /proc/self/fd for writing, write one byte (the 2019 attack)
 *                                                              → {"op":"reopen-write","open":...,"write":...}
 *   probe read PATH            open+read PATH                  → {"op":"read","errno":...}
 *   probe fork N [SECONDS]     fork N children that sleep      → {"op":"fork","ok":K,"errno":...}
 *   probe chown PATH UID GID   chown(2)                        → {"op":"chown","errno":...}
 *   probe mknod PATH           mknod a char device 1:3         → {"op":"mknod","errno":...}
 *   probe syscall NAME [ARG...] one raw system call (keyctl unshare mount clone clone3 socket
 *                              personality getppid chroot setns io_uring_setup io_uring_enter
 *                              io_uring_register), integer args
 *                                                              → {"op":"syscall","name":...,"errno":...}
 *   probe io-uring             io_uring_setup(4, &params) for real (the fd is closed)
 *                                                              → {"op":"io-uring","errno":...}
 *   probe handle PATH          name_to_handle_at(PATH), then open_by_handle_at with that handle
 *                                                              → {"op":"handle","name":...,"open":...}
 *   probe filtered FILTER NAME [ARG...]  load FILTER (struct sock_filter[] bytes) under
 *                              no_new_privs, then as `syscall`
 *   probe loop N [FILTER]      time N getppid() and N personality(0xffffffff) calls, after
 *                              loading FILTER (struct sock_filter[] bytes) if given
 *                                                              → {"op":"loop","getppid_ns":...,"personality_ns":...}
 *   probe watch-exe SECONDS    the CVE-2019-5736 watcher: for SECONDS (or until SIGTERM), scan /proc/<pid>/exe of
 *                              every process this container can see (readdir, plus the next
 *                              pids ahead, as an attacker guesses them), hold an O_PATH fd
 *                              to each distinct executable that is not this probe, then
 *                              reopen each through /proc/self/fd for writing and close it
 *                              at once (never writes)    → {"op":"watch-exe","scans":N,
 *                              "seen":[{"exe":..,"pid":..}],"held":[{"exe":..,"reopen":..}]}
 *   probe stdio-attack FD [write]  what a container can do to the file behind its fd FD
 *                              through /proc/self/fd/FD: readlink, reopen it O_RDONLY and
 *                              read, chown 1234:1234 then chmod 04755, and with `write`
 *                              reopen it O_WRONLY and write "PWNED". Reported on a dup of
 *                              fd 2 (FD's own stream stays untouched)
 *                                                              → {"op":"stdio-attack","link":...,"read":...,...}
 *   probe landlock             the Landlock ABI this kernel offers (landlock_create_ruleset with
 *                              LANDLOCK_CREATE_RULESET_VERSION)
 *                                                              → {"op":"landlock","abi":N,"errno":...}
 *   probe sleep SECONDS
 *   probe exit CODE
 * Errors are given by name (ENOENT, EPERM...) and "0" for success.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/filter.h>
#include <linux/io_uring.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *ename(int e) {
  switch (e) {
  case 0: return "0";
  case EPERM: return "EPERM";
  case ENOENT: return "ENOENT";
  case EACCES: return "EACCES";
  case EROFS: return "EROFS";
  case EAGAIN: return "EAGAIN";
  case EEXIST: return "EEXIST";
  case EINVAL: return "EINVAL";
  case ENOSYS: return "ENOSYS";
  case ETXTBSY: return "ETXTBSY";
  case EBADF: return "EBADF";
  case ENOMEM: return "ENOMEM";
  case ENOTDIR: return "ENOTDIR";
  case EISDIR: return "EISDIR";
  case EAFNOSUPPORT: return "EAFNOSUPPORT";
  case ENXIO: return "ENXIO";
  case EFAULT: return "EFAULT";
  case EOPNOTSUPP: return "EOPNOTSUPP";
  case E2BIG: return "E2BIG";
  case EOVERFLOW: return "EOVERFLOW";
  case ESTALE: return "ESTALE";
  }
  static char buf[32];
  snprintf(buf, sizeof buf, "E%d", e);
  return buf;
}

static void json_str(const char *s) {
  putchar('"');
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\') printf("\\%c", c);
    else if (c < 0x20) printf("\\u%04x", c);
    else putchar(c);
  }
  putchar('"');
}

static void result(const char *op, int err) {
  printf("{\"op\":\"%s\",\"errno\":\"%s\"}\n", op, ename(err));
}

static void status_field(const char *name) {
  FILE *f = fopen("/proc/self/status", "r");
  char line[512];
  size_t n = strlen(name);
  while (f && fgets(line, sizeof line, f)) {
    if (strncmp(line, name, n) == 0 && line[n] == ':') {
      char *v = line + n + 1;
      while (*v == ' ' || *v == '\t') v++;
      v[strcspn(v, "\n")] = 0;
      printf(",\"%s\":", name);
      json_str(v);
      break;
    }
  }
  if (f) fclose(f);
}

static void info(void) {
  char host[256] = "", cwd[4096] = "";
  gethostname(host, sizeof host);
  if (!getcwd(cwd, sizeof cwd)) strcpy(cwd, "?");
  printf("{\"op\":\"info\",\"pid\":%d,\"ppid\":%d,\"uid\":%d,\"gid\":%d,\"euid\":%d,\"egid\":%d", getpid(), getppid(),
         getuid(), getgid(), geteuid(), getegid());
  gid_t groups[64];
  int ng = getgroups(64, groups);
  printf(",\"groups\":[");
  for (int i = 0; i < ng; i++) printf("%s%d", i ? "," : "", groups[i]);
  printf("],\"hostname\":");
  json_str(host);
  printf(",\"cwd\":");
  json_str(cwd);

  static const char *ns[] = {"cgroup", "ipc", "mnt", "net", "pid", "user", "uts", "time"};
  printf(",\"ns\":{");
  for (size_t i = 0; i < sizeof ns / sizeof *ns; i++) {
    char p[64], link[128] = "";
    snprintf(p, sizeof p, "/proc/self/ns/%s", ns[i]);
    ssize_t r = readlink(p, link, sizeof link - 1);
    if (r > 0) link[r] = 0;
    printf("%s\"%s\":", i ? "," : "", ns[i]);
    json_str(link);
  }
  printf("}");

  /* open fds other than the one opendir uses to list them */
  printf(",\"fds\":[");
  DIR *d = opendir("/proc/self/fd");
  int first = 1, self = d ? dirfd(d) : -1;
  struct dirent *e;
  while (d && (e = readdir(d))) {
    if (e->d_name[0] == '.') continue;
    int fd = atoi(e->d_name);
    if (fd == self) continue;
    char p[64], link[512] = "";
    snprintf(p, sizeof p, "/proc/self/fd/%d", fd);
    ssize_t r = readlink(p, link, sizeof link - 1);
    if (r > 0) link[r] = 0;
    printf("%s{\"fd\":%d,\"target\":", first ? "" : ",", fd);
    json_str(link);
    printf("}");
    first = 0;
  }
  if (d) closedir(d);
  printf("]");

  static const char *maps[] = {"uid_map", "gid_map"};
  for (size_t i = 0; i < 2; i++) {
    char p[64], buf[512] = "";
    snprintf(p, sizeof p, "/proc/self/%s", maps[i]);
    int fd = open(p, O_RDONLY);
    ssize_t r = fd >= 0 ? read(fd, buf, sizeof buf - 1) : -1;
    if (fd >= 0) close(fd);
    buf[r > 0 ? r : 0] = 0;
    printf(",\"%s\":", maps[i]);
    json_str(buf);
  }

  static const char *fields[] = {"CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs", "Seccomp"};
  for (size_t i = 0; i < sizeof fields / sizeof *fields; i++) status_field(fields[i]);

  struct rlimit rl;
  getrlimit(RLIMIT_NOFILE, &rl);
  printf(",\"nofile\":[%llu,%llu]", (unsigned long long)rl.rlim_cur, (unsigned long long)rl.rlim_max);
  getrlimit(RLIMIT_NPROC, &rl);
  printf(",\"nproc\":[%llu,%llu]", (unsigned long long)rl.rlim_cur, (unsigned long long)rl.rlim_max);

  printf(",\"mounts\":[");
  FILE *m = fopen("/proc/self/mountinfo", "r");
  char line[4096];
  first = 1;
  while (m && fgets(line, sizeof line, m)) {
    /* fields: id parent major:minor root mountpoint options ... - fstype source superopts */
    char *save, *tok = strtok_r(line, " ", &save);
    char *mp = NULL, *opts = NULL, *fstype = NULL;
    for (int i = 0; tok; i++, tok = strtok_r(NULL, " ", &save)) {
      if (i == 4) mp = tok;
      if (i == 5) opts = tok;
      if (strcmp(tok, "-") == 0) {
        fstype = strtok_r(NULL, " ", &save);
        break;
      }
    }
    if (!mp || !opts || !fstype) continue;
    printf("%s{\"path\":", first ? "" : ",");
    json_str(mp);
    printf(",\"type\":");
    json_str(fstype);
    printf(",\"options\":");
    json_str(opts);
    printf("}");
    first = 0;
  }
  if (m) fclose(m);
  printf("]}\n");
}


static const struct { const char *name; long nr; } SYSCALLS[] = {
    {"keyctl", SYS_keyctl}, {"unshare", SYS_unshare}, {"mount", SYS_mount}, {"clone", SYS_clone},
    {"clone3", SYS_clone3}, {"socket", SYS_socket}, {"personality", SYS_personality},
    {"getppid", SYS_getppid}, {"chroot", SYS_chroot}, {"setns", SYS_setns},
    {"io_uring_setup", SYS_io_uring_setup}, {"io_uring_enter", SYS_io_uring_enter},
    {"io_uring_register", SYS_io_uring_register},
};

/* One raw call; a clone that succeeds returns 0 in the child, which leaves at once. */
static void raw_syscall(int argc, char **argv) {
  long nr = -1, a[6] = {0};
  for (size_t i = 0; i < sizeof SYSCALLS / sizeof *SYSCALLS; i++)
    if (strcmp(SYSCALLS[i].name, argv[2]) == 0) nr = SYSCALLS[i].nr;
  if (nr < 0) {
    fprintf(stderr, "probe: unknown system call %s\n", argv[2]);
    exit(2);
  }
  for (int i = 3; i < argc && i < 9; i++) a[i - 3] = (long)strtoull(argv[i], NULL, 0);
  if (nr == SYS_clone) a[0] |= SIGCHLD;
  long r = syscall(nr, a[0], a[1], a[2], a[3], a[4], a[5]);
  int err = r < 0 ? errno : 0;
  if (r == 0 && (nr == SYS_clone || nr == SYS_clone3)) _exit(0);
  if (r > 0 && (nr == SYS_clone || nr == SYS_clone3)) waitpid((pid_t)r, NULL, 0);
  if (r >= 0 && nr == SYS_socket) close((int)r);
  printf("{\"op\":\"syscall\",\"name\":\"%s\",\"errno\":\"%s\"}\n", argv[2], ename(err));
}

/* Loads struct sock_filter[] from a file: prctl(NO_NEW_PRIVS) + seccomp(SET_MODE_FILTER). */
static int load_filter(const char *path) {
  static struct sock_filter insns[4096];
  FILE *f = fopen(path, "rb");
  size_t len = f ? fread(insns, sizeof *insns, 4096, f) : 0;
  if (f) fclose(f);
  struct sock_fprog prog = {(unsigned short)len, insns};
  if (!len) return ENOENT;
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) || syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog)) return errno;
  return 0;
}

static double ns_per_call(long nr, long arg, long n) {
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  for (long i = 0; i < n; i++) syscall(nr, arg);
  clock_gettime(CLOCK_MONOTONIC, &t1);
  return ((t1.tv_sec - t0.tv_sec) * 1e9 + (t1.tv_nsec - t0.tv_nsec)) / (double)n;
}

/* Loads a BPF program from a file (as tsrun-init would) and times two cheap calls:
 * getppid (always allowed: the kernel's per-number cache skips the filter) and
 * personality(0xffffffff) (argument rule: the filter runs). */
static int loop(int argc, char **argv) {
  long n = atol(argv[2]);
  int err = argc > 3 ? load_filter(argv[3]) : 0;
  if (err) {
    printf("{\"op\":\"loop\",\"errno\":\"%s\"}\n", ename(err));
    return 1;
  }
  ns_per_call(SYS_getppid, 0, n / 10); /* warm up */
  double g = ns_per_call(SYS_getppid, 0, n), p = ns_per_call(SYS_personality, 0xffffffffL, n);
  printf("{\"op\":\"loop\",\"n\":%ld,\"getppid_ns\":%.2f,\"personality_ns\":%.2f}\n", n, g, p);
  return 0;
}

#define WATCH_MAX 32
static struct { char exe[512]; int pid, fd; } watched[WATCH_MAX];
static int nwatched;
static int watch_max_pid;
static char watch_self[512]; /* readlink of /proc/self/exe */

/* One /proc/<pid>/exe: readlink it; an executable not seen before (by device and inode,
 * this probe excluded) is recorded, with an O_PATH fd through the magic link. */
static void watch_pid(int pid, dev_t self_dev, ino_t self_ino) {
  char link[64], exe[512];
  snprintf(link, sizeof link, "/proc/%d/exe", pid);
  ssize_t n = readlink(link, exe, sizeof exe - 1);
  if (n <= 0) {
    /* EACCES: a process exists there that this probe may not inspect (non-dumpable) */
    if (errno != ENOENT && pid > watch_max_pid) watch_max_pid = pid;
    return;
  }
  exe[n] = '\0';
  if (pid > watch_max_pid) watch_max_pid = pid;
  int fd = open(link, O_PATH | O_CLOEXEC);
  struct stat st;
  if (fd >= 0 && fstat(fd, &st) == 0 && st.st_dev == self_dev && st.st_ino == self_ino) {
    close(fd);
    return;
  }
  /* gone between readlink and open: it can only be told apart by its path, and this probe's
   * own (another probe process of the container) is not what the watch is for */
  if (fd < 0 && strcmp(exe, watch_self) == 0) return;
  for (int i = 0; i < nwatched; i++)
    if (strcmp(watched[i].exe, exe) == 0) {
      if (fd >= 0 && watched[i].fd < 0) watched[i].fd = fd;
      else if (fd >= 0) close(fd);
      return;
    }
  if (nwatched == WATCH_MAX) {
    if (fd >= 0) close(fd);
    return;
  }
  snprintf(watched[nwatched].exe, sizeof watched[nwatched].exe, "%s", exe);
  watched[nwatched].pid = pid;
  watched[nwatched++].fd = fd;
}

static volatile sig_atomic_t watch_stop;
static void watch_on_term(int sig) {
  (void)sig;
  watch_stop = 1;
}

static int watch_exe(double seconds) {
  /* SIGTERM ends the watch early (as PID 1 of its namespace it needs a handler to get it) */
  signal(SIGTERM, watch_on_term);
  struct stat self;
  if (stat("/proc/self/exe", &self) < 0) return 1;
  ssize_t sl = readlink("/proc/self/exe", watch_self, sizeof watch_self - 1);
  watch_self[sl > 0 ? sl : 0] = '\0';
  watch_max_pid = getpid();
  struct timespec t0, now;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  long scans = 0;
  printf("{\"op\":\"ready\"}\n");
  for (;;) {
    clock_gettime(CLOCK_MONOTONIC, &now);
    if (watch_stop || (double)(now.tv_sec - t0.tv_sec) + (double)(now.tv_nsec - t0.tv_nsec) / 1e9 >= seconds) break;
    /* pids are handed out in order in a PID namespace: the next few are where a newcomer
     * appears, so they are polled on every round, the whole of /proc every 64th */
    int base = watch_max_pid;
    for (int k = 1; k <= 8; k++) watch_pid(base + k, self.st_dev, self.st_ino);
    if (scans++ % 64 == 0) {
      DIR *d = opendir("/proc");
      if (d) {
        struct dirent *e;
        while ((e = readdir(d)))
          if (e->d_name[0] >= '1' && e->d_name[0] <= '9') watch_pid(atoi(e->d_name), self.st_dev, self.st_ino);
        closedir(d);
      }
    }
  }
  printf("{\"op\":\"watch-exe\",\"scans\":%ld,\"seen\":[", scans);
  for (int i = 0; i < nwatched; i++) {
    printf("%s{\"exe\":", i ? "," : "");
    json_str(watched[i].exe);
    printf(",\"pid\":%d}", watched[i].pid);
  }
  printf("],\"held\":[");
  int first = 1;
  for (int i = 0; i < nwatched; i++) {
    if (watched[i].fd < 0) continue;
    /* the 2019 attack's second half, stopped short of writing: the target may be a host binary */
    char p[64];
    snprintf(p, sizeof p, "/proc/self/fd/%d", watched[i].fd);
    int fd = open(p, O_WRONLY | O_CLOEXEC);
    int err = fd < 0 ? errno : 0;
    if (fd >= 0) close(fd);
    printf("%s{\"exe\":", first ? "" : ",");
    json_str(watched[i].exe);
    printf(",\"reopen\":\"%s\"}", ename(err));
    first = 0;
  }
  printf("]}\n");
  return 0;
}

/* Design rule 4's attack: the magic link /proc/self/fd/N reopens the inode behind fd N,
 * whatever mode it was opened with, and chmod/chown through it reach that inode. */
static int stdio_attack(int n, int do_write) {
  char p[64], link[256] = "", data[129] = "";
  snprintf(p, sizeof p, "/proc/self/fd/%d", n);
  ssize_t l = readlink(p, link, sizeof link - 1);
  if (l > 0) link[l] = '\0';
  int fd = open(p, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  int rerr = fd < 0 ? errno : 0;
  if (fd >= 0) {
    ssize_t got = read(fd, data, sizeof data - 1);
    if (got < 0) rerr = errno;
    for (ssize_t i = 0; i < got; i++) /* printable, and nothing JSON must escape */
      data[i] = data[i] >= 0x20 && data[i] < 0x7f && data[i] != '"' && data[i] != '\\' ? data[i] : '.';
    close(fd);
  }
  int cherr = chown(p, 1234, 1234) < 0 ? errno : 0;
  int mderr = chmod(p, 04755) < 0 ? errno : 0;
  int werr = -1;
  if (do_write) {
    int w = open(p, O_WRONLY | O_NONBLOCK | O_CLOEXEC);
    werr = w < 0 ? errno : write(w, "PWNED", 5) < 0 ? errno : 0;
    if (w >= 0) close(w);
  }
  FILE *out = fdopen(dup(2), "w");
  if (!out) return 1;
  for (char *c = link; *c; c++)
    if (*c == '"' || *c == '\\' || (unsigned char)*c < 0x20) *c = '.';
  fprintf(out, "{\"op\":\"stdio-attack\",\"fd\":%d,\"link\":\"%s\",\"open\":\"%s\",\"read\":\"%s\",", n, link, ename(rerr), data);
  fprintf(out, "\"chown\":\"%s\",\"chmod\":\"%s\",\"write\":\"%s\"}\n", ename(cherr), ename(mderr), werr < 0 ? "-" : ename(werr));
  fclose(out);
  return 0;
}

/* Capability names by number (capability.h), for `probe show`. */
static const char *CAPS[] = {"chown", "dac_override", "dac_read_search", "fowner", "fsetid", "kill", "setgid", "setuid", "setpcap",
                             "linux_immutable", "net_bind_service", "net_broadcast", "net_admin", "net_raw", "ipc_lock", "ipc_owner",
                             "sys_module", "sys_rawio", "sys_chroot", "sys_ptrace", "sys_pacct", "sys_admin", "sys_boot", "sys_nice",
                             "sys_resource", "sys_time", "sys_tty_config", "mknod", "lease", "audit_write", "audit_control", "setfcap",
                             "mac_override", "mac_admin", "syslog", "wake_alarm", "block_suspend", "audit_read", "perfmon", "bpf",
                             "checkpoint_restore"};

static void show_caps(const char *field) {
  FILE *f = fopen("/proc/self/status", "r");
  char line[256];
  unsigned long long v = 0;
  size_t n = strlen(field);
  while (f && fgets(line, sizeof line, f))
    if (strncmp(line, field, n) == 0 && line[n] == ':') v = strtoull(line + n + 1, NULL, 16);
  if (f) fclose(f);
  printf("  %-7s %016llx", field, v);
  int k = 0;
  for (unsigned i = 0; i < sizeof CAPS / sizeof *CAPS; i++)
    if (v & (1ULL << i)) printf("%s%s", k++ ? "," : " ", CAPS[i]);
  if (!v) printf(" (none)");
  printf("\n");
}

static void show_file(const char *label, const char *path) {
  char buf[1024] = "";
  int fd = open(path, O_RDONLY);
  ssize_t r = fd >= 0 ? read(fd, buf, sizeof buf - 1) : -1;
  if (fd >= 0) close(fd);
  buf[r > 0 ? r : 0] = 0;
  if (r > 0 && buf[r - 1] == '\n') buf[r - 1] = 0;
  printf("%s%s\n", label, r < 0 ? ename(errno) : buf);
}

static const char *status_value(const char *name, char *out, size_t len) {
  FILE *f = fopen("/proc/self/status", "r");
  char line[256];
  size_t n = strlen(name);
  snprintf(out, len, "?");
  while (f && fgets(line, sizeof line, f))
    if (strncmp(line, name, n) == 0 && line[n] == ':') {
      char *v = line + n + 1;
      while (*v == ' ' || *v == '\t') v++;
      v[strcspn(v, "\n")] = 0;
      snprintf(out, len, "%s", v);
    }
  if (f) fclose(f);
  return out;
}

/* What the container sees, for people: `tsrun run --rm probe` (the image's default). */
static void show(void) {
  char v[64];
  printf("identity\n  uid %d (euid %d), gid %d (egid %d)\n", getuid(), geteuid(), getgid(), getegid());
  show_file("  uid_map  ", "/proc/self/uid_map");
  show_file("  gid_map  ", "/proc/self/gid_map");
  printf("capabilities\n");
  static const char *cf[] = {"CapEff", "CapPrm", "CapBnd", "CapInh", "CapAmb"};
  for (size_t i = 0; i < 5; i++) show_caps(cf[i]);
  printf("privileges\n  no_new_privs %s\n", status_value("NoNewPrivs", v, sizeof v));
  const char *sm = status_value("Seccomp", v, sizeof v);
  printf("  seccomp      %s (%s)\n", sm, strcmp(sm, "2") == 0 ? "filter" : strcmp(sm, "1") == 0 ? "strict" : "none");
  printf("limits\n");
  static const struct { const char *name; int res; } lim[] = {{"nofile", RLIMIT_NOFILE}, {"nproc", RLIMIT_NPROC}, {"core", RLIMIT_CORE}, {"memlock", RLIMIT_MEMLOCK}};
  for (size_t i = 0; i < sizeof lim / sizeof *lim; i++) {
    struct rlimit rl;
    getrlimit(lim[i].res, &rl);
    char s[32], h[32];
    if (rl.rlim_cur == RLIM_INFINITY) snprintf(s, sizeof s, "unlimited");
    else snprintf(s, sizeof s, "%llu", (unsigned long long)rl.rlim_cur);
    if (rl.rlim_max == RLIM_INFINITY) snprintf(h, sizeof h, "unlimited");
    else snprintf(h, sizeof h, "%llu", (unsigned long long)rl.rlim_max);
    printf("  %-8s soft %s, hard %s\n", lim[i].name, s, h);
  }
  printf("read-only mounts\n");
  FILE *m = fopen("/proc/self/mountinfo", "r");
  char line[4096];
  while (m && fgets(line, sizeof line, m)) {
    char *save, *tok = strtok_r(line, " ", &save), *mp = NULL, *opts = NULL, *fstype = NULL;
    for (int i = 0; tok; i++, tok = strtok_r(NULL, " ", &save)) {
      if (i == 4) mp = tok;
      if (i == 5) opts = tok;
      if (strcmp(tok, "-") == 0) {
        fstype = strtok_r(NULL, " ", &save);
        break;
      }
    }
    if (mp && opts && fstype && (strncmp(opts, "ro,", 3) == 0 || strcmp(opts, "ro") == 0)) printf("  %s (%s)\n", mp, fstype);
  }
  if (m) fclose(m);
  /* Docker's masked paths: /dev/null bound over a file, an empty read-only tmpfs over a dir */
  printf("masked paths\n");
  static const char *masked[] = {"/proc/asound", "/proc/acpi", "/proc/interrupts", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                                 "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware",
                                 "/sys/devices/virtual/powercap"};
  for (size_t i = 0; i < sizeof masked / sizeof *masked; i++) {
    struct stat st;
    const char *state;
    if (stat(masked[i], &st) < 0) state = "absent";
    else if (S_ISCHR(st.st_mode) && major(st.st_rdev) == 1 && minor(st.st_rdev) == 3) state = "masked (/dev/null)";
    else if (S_ISDIR(st.st_mode)) {
      DIR *d = opendir(masked[i]);
      int entries = 0;
      struct dirent *e;
      while (d && (e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) entries++;
      if (d) closedir(d);
      state = entries ? "VISIBLE" : "masked (empty)";
    } else state = "VISIBLE";
    printf("  %-30s %s\n", masked[i], state);
  }
}

int main(int argc, char **argv) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  if (strcmp(argc > 1 ? argv[1] : "", "watch-exe") == 0 && argc == 3) return watch_exe(atof(argv[2]));
  if (argc < 2 || strcmp(argv[1], "info") == 0) {
    info();
    return 0;
  }
  if (strcmp(argv[1], "show") == 0) {
    show();
    return 0;
  }
  const char *cmd = argv[1];
  if (strcmp(cmd, "write") == 0 && argc == 3) {
    int fd = open(argv[2], O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int err = fd < 0 ? errno : 0;
    if (fd >= 0 && write(fd, "probe\n", 6) != 6) err = errno;
    if (fd >= 0) close(fd);
    result("write", err);
    return 0;
  }
  if (strcmp(cmd, "open-write") == 0 && argc == 3) {
    int fd = open(argv[2], O_WRONLY);
    int err = fd < 0 ? errno : 0;
    if (fd >= 0) close(fd); /* never write: the target may be a host binary */
    result("open-write", err);
    return 0;
  }
  if (strcmp(cmd, "reopen-write") == 0 && argc == 4) {
    int pfd = open(argv[2], O_PATH);
    if (pfd < 0) {
      printf("{\"op\":\"reopen-write\",\"open\":\"%s\",\"write\":\"-\"}\n", ename(errno));
      return 0;
    }
    printf("{\"op\":\"ready\"}\n");
    sleep((unsigned)atoi(argv[3]));
    char p[64];
    snprintf(p, sizeof p, "/proc/self/fd/%d", pfd);
    int fd = open(p, O_WRONLY);
    int oerr = fd < 0 ? errno : 0, werr = -1;
    if (fd >= 0) werr = write(fd, "", 1) < 0 ? errno : 0;
    printf("{\"op\":\"reopen-write\",\"open\":\"%s\",\"write\":\"%s\"}\n", ename(oerr), werr < 0 ? "-" : ename(werr));
    return 0;
  }
  if (strcmp(cmd, "read") == 0 && argc == 3) {
    char buf[64];
    int fd = open(argv[2], O_RDONLY);
    int err = fd < 0 ? errno : 0;
    if (fd >= 0 && read(fd, buf, sizeof buf) < 0) err = errno;
    if (fd >= 0) close(fd);
    result("read", err);
    return 0;
  }
  if (strcmp(cmd, "fork") == 0 && argc >= 3) {
    int n = atoi(argv[2]), secs = argc > 3 ? atoi(argv[3]) : 2, ok = 0, err = 0;
    for (int i = 0; i < n; i++) {
      pid_t p = fork();
      if (p == 0) {
        sleep((unsigned)secs);
        _exit(0);
      }
      if (p < 0) {
        err = errno;
        break;
      }
      ok++;
    }
    printf("{\"op\":\"fork\",\"ok\":%d,\"errno\":\"%s\"}\n", ok, ename(err));
    while (wait(NULL) > 0) {
    }
    return 0;
  }
  if (strcmp(cmd, "chown") == 0 && argc == 5) {
    result("chown", chown(argv[2], (uid_t)atoi(argv[3]), (gid_t)atoi(argv[4])) < 0 ? errno : 0);
    return 0;
  }
  if (strcmp(cmd, "landlock") == 0 && argc == 2) {
    long abi = syscall(444 /* landlock_create_ruleset, same number on every arch */, NULL, 0, 1U /* _VERSION */);
    int e = abi < 0 ? errno : 0;
    printf("{\"op\":\"landlock\",\"abi\":%ld,\"errno\":\"%s\"}\n", abi < 0 ? 0 : abi, ename(e));
    return 0;
  }
  if (strcmp(cmd, "mknod") == 0 && argc == 3) {
    result("mknod", mknod(argv[2], S_IFCHR | 0600, makedev(1, 3)) < 0 ? errno : 0);
    return 0;
  }
  if (strcmp(cmd, "keyring") == 0 && argc == 2) {
    /* the session keyring this process has (keyctl(2) KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING = -3, no create) */
    long id = syscall(SYS_keyctl, 0 /* KEYCTL_GET_KEYRING_ID */, -3L, 0L);
    printf("{\"op\":\"keyring\",\"serial\":%ld,\"errno\":\"%s\"}\n", id < 0 ? 0L : id, ename(id < 0 ? errno : 0));
    return 0;
  }
  if (strcmp(cmd, "syscall") == 0 && argc >= 3) {
    raw_syscall(argc, argv);
    return 0;
  }
  if (strcmp(cmd, "io-uring") == 0 && argc == 2) {
    /* a real ring: the kernel's own checks pass, so only a filter (or the
     * kernel.io_uring_disabled sysctl) can answer EPERM */
    struct io_uring_params p;
    memset(&p, 0, sizeof p);
    long fd = syscall(SYS_io_uring_setup, 4, &p);
    int err = fd < 0 ? errno : 0;
    if (fd >= 0) close((int)fd);
    result("io-uring", err);
    return 0;
  }
  if (strcmp(cmd, "handle") == 0 && argc == 3) {
    /* name_to_handle_at only encodes an inode number and generation; open_by_handle_at
     * is the dangerous half (the 2014 "shocker" escape), refused without
     * CAP_DAC_READ_SEARCH by the kernel itself */
    union {
      struct file_handle fh;
      char buf[sizeof(struct file_handle) + MAX_HANDLE_SZ];
    } h;
    int mount_id, nerr = 0, oerr = -1;
    h.fh.handle_bytes = MAX_HANDLE_SZ;
    if (name_to_handle_at(AT_FDCWD, argv[2], &h.fh, &mount_id, 0) < 0) nerr = errno;
    if (!nerr) {
      int mfd = open(argv[2], O_RDONLY);
      int fd = mfd < 0 ? -1 : open_by_handle_at(mfd, &h.fh, O_RDONLY | O_PATH);
      oerr = fd < 0 ? errno : 0;
      if (fd >= 0) close(fd);
      if (mfd >= 0) close(mfd);
    }
    printf("{\"op\":\"handle\",\"name\":\"%s\",\"open\":\"%s\"}\n", ename(nerr), oerr < 0 ? "-" : ename(oerr));
    return 0;
  }
  if (strcmp(cmd, "loop") == 0 && argc >= 3) return loop(argc, argv);
  if (strcmp(cmd, "filtered") == 0 && argc >= 4) {
    int err = load_filter(argv[2]);
    if (err) {
      printf("{\"op\":\"filtered\",\"errno\":\"%s\"}\n", ename(err));
      return 1;
    }
    raw_syscall(argc - 1, argv + 1);
    return 0;
  }
  if (strcmp(cmd, "stdio-attack") == 0 && (argc == 3 || argc == 4)) return stdio_attack(atoi(argv[2]), argc == 4);
  if (strcmp(cmd, "sleep") == 0 && argc == 3) {
    sleep((unsigned)atoi(argv[2]));
    return 0;
  }
  if (strcmp(cmd, "exit") == 0 && argc == 3) return atoi(argv[2]);
  fprintf(stderr, "probe: unknown command\n");
  return 2;
}
