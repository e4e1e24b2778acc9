/*
 * bin/tsrun: starts Node from the CLI's start-up snapshot when the snapshot fits, else
 * from the plain bundle.
 *
 * A V8 snapshot only loads into the exact Node binary that built it (node refuses any
 * other with exit code 14, before a line of JavaScript runs, and a launcher could not tell
 * that 14 from a container's). So the choice is made here, before node starts, from the
 * stamp scripts/bundle.mjs writes next to the blob: the node binary it was built with (path,
 * size, modification time) and the project directory it was built in. Any difference (node
 * upgraded, checkout moved, a guest that sees other files) means the plain bundle.
 *
 * The same node binary can still refuse the blob on another machine: V8 checks that its
 * configuration matches, and that follows the CPU (a QEMU guest with another CPU model
 * running this very checkout got "built with a different version of V8 or with different V8
 * configurations"). So the first start on a machine probes: node from the blob, `--version`,
 * output discarded; its verdict is cached next to the blob under a fingerprint of what V8
 * may depend on (the stamp, the node binary as it is now, CPU flags and count, memory), and
 * later starts only look the verdict up. A probe costs one node start, once.
 * TSRUN_NO_SNAPSHOT=1 forces the plain bundle, to compare or to debug.
 *
 * C rather than a shell script: a shell and a readlink would cost milliseconds on every
 * call, and the whole point is start-up time (issue 2's benchmark).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysinfo.h>
#include <sys/wait.h>
#include <unistd.h>

#define STAMP_VERSION "tsrun-snapshot-stamp 1"

/* One line of `text` (from *pos) into out; 0 when there is none. */
static int next_line(const char *text, size_t *pos, char *out, size_t n) {
  const char *s = text + *pos;
  if (!*s) return 0;
  const char *e = strchr(s, '\n');
  size_t len = e ? (size_t)(e - s) : strlen(s);
  if (len >= n) return 0;
  memcpy(out, s, len);
  out[len] = '\0';
  *pos += len + (e ? 1 : 0);
  return 1;
}

/* Whether the stamp names this node binary as it is now and this project directory. */
static int stamp_fits(const char *root, char *node, size_t node_n) {
  char path[PATH_MAX + 64], text[2 * PATH_MAX + 256];
  snprintf(path, sizeof path, "%s/dist/tsrun.blob.stamp", root);
  FILE *f = fopen(path, "re");
  if (!f) return 0;
  size_t len = fread(text, 1, sizeof text - 1, f);
  fclose(f);
  text[len] = '\0';
  char version[64], size[32], mtime[64], built_in[PATH_MAX];
  size_t pos = 0;
  if (!next_line(text, &pos, version, sizeof version) || strcmp(version, STAMP_VERSION) != 0) return 0;
  if (!next_line(text, &pos, node, node_n) || !next_line(text, &pos, size, sizeof size) ||
      !next_line(text, &pos, mtime, sizeof mtime) || !next_line(text, &pos, built_in, sizeof built_in))
    return 0;
  if (strcmp(built_in, root) != 0) return 0;
  struct stat st;
  if (stat(node, &st) < 0) return 0;
  char now_size[32], now_mtime[64];
  snprintf(now_size, sizeof now_size, "%lld", (long long)st.st_size);
  snprintf(now_mtime, sizeof now_mtime, "%lld.%09ld", (long long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec);
  return strcmp(size, now_size) == 0 && strcmp(mtime, now_mtime) == 0;
}

static uint64_t fnv1a(uint64_t h, const void *p, size_t n) {
  for (size_t i = 0; i < n; i++) h = (h ^ ((const unsigned char *)p)[i]) * 0x100000001b3ULL;
  return h;
}

static uint64_t fnv1a_file(uint64_t h, const char *path) {
  char buf[8192];
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return fnv1a(h, "-", 1);
  ssize_t n;
  while ((n = read(fd, buf, sizeof buf)) > 0) h = fnv1a(h, buf, (size_t)n);
  close(fd);
  return h;
}

/* What V8's verdict on the blob may depend on, besides the blob itself: the stamp (the blob
 * as built), the node binary as it is now, the CPU's feature flags and count, the memory. */
static uint64_t fingerprint(const char *root, const char *node) {
  char path[PATH_MAX + 64];
  uint64_t h = 0xcbf29ce484222325ULL;
  snprintf(path, sizeof path, "%s/dist/tsrun.blob.stamp", root);
  h = fnv1a_file(h, path);
  struct stat st;
  if (stat(node, &st) == 0) {
    long long v[3] = {(long long)st.st_size, (long long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec};
    h = fnv1a(h, v, sizeof v);
  }
  /* the first "flags" line of /proc/cpuinfo ("Features" on arm64) */
  FILE *f = fopen("/proc/cpuinfo", "re");
  if (f) {
    char line[8192];
    while (fgets(line, sizeof line, f))
      if (strncmp(line, "flags", 5) == 0 || strncmp(line, "Features", 8) == 0) {
        h = fnv1a(h, line, strlen(line));
        break;
      }
    fclose(f);
  }
  long cpus = sysconf(_SC_NPROCESSORS_ONLN);
  h = fnv1a(h, &cpus, sizeof cpus);
  struct sysinfo si;
  if (sysinfo(&si) == 0) {
    unsigned long long mem = (unsigned long long)si.totalram * si.mem_unit;
    h = fnv1a(h, &mem, sizeof mem);
  }
  return h;
}

/* Does node load the blob here? Cached per fingerprint: dist/tsrun.blob.fits-<fp> or .unfit-<fp>. */
static int blob_loads(const char *root, const char *node, const char *blob) {
  char yes[PATH_MAX + 64], no[PATH_MAX + 64];
  uint64_t fp = fingerprint(root, node);
  snprintf(yes, sizeof yes, "%s/dist/tsrun.blob.fits-%016llx", root, (unsigned long long)fp);
  snprintf(no, sizeof no, "%s/dist/tsrun.blob.unfit-%016llx", root, (unsigned long long)fp);
  if (access(yes, F_OK) == 0) return 1;
  if (access(no, F_OK) == 0) return 0;
  pid_t pid = fork();
  if (pid < 0) return 0;
  if (pid == 0) {
    int null = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (null >= 0) {
      dup2(null, 0);
      dup2(null, 1);
      dup2(null, 2);
    }
    char *args[] = {(char *)node, "--snapshot-blob", (char *)blob, "--", "--version", NULL};
    execv(node, args);
    _exit(127);
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  int ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
  /* best effort: a read-only checkout probes every time */
  int fd = open(ok ? yes : no, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
  if (fd >= 0) close(fd);
  return ok;
}

int main(int argc, char **argv) {
  /* --preserve-fds N passes the caller's fds 3..3+N-1 to a container. Node takes the lowest
   * free numbers for its own fds (its epoll instance lands on 3) and marks the inherited ones
   * close-on-exec too, so only here, before node starts, can it be told which fds the caller
   * passed: how many are open from 3 on, always set here, never taken from the caller. */
  int open_from_3 = 0;
  while (open_from_3 < 64 && fcntl(3 + open_from_3, F_GETFD) >= 0) open_from_3++;
  char nfds[8];
  snprintf(nfds, sizeof nfds, "%d", open_from_3);
  setenv("TSRUN_CALLER_FDS", nfds, 1);
  /* build/tsrun-launch → the project root, whatever symlink the user called */
  char root[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", root, sizeof root - 1);
  if (n < 0) {
    perror("tsrun: readlink /proc/self/exe");
    return 125;
  }
  root[n] = '\0';
  for (int up = 0; up < 2; up++) {
    char *slash = strrchr(root, '/');
    if (!slash || slash == root) {
      fprintf(stderr, "tsrun: cannot find the project directory from %s\n", root);
      return 125;
    }
    *slash = '\0';
  }

  char **args = calloc((size_t)argc + 5, sizeof *args);
  if (!args) return 125;
  char node[PATH_MAX], blob[PATH_MAX + 32], entry[PATH_MAX + 32];
  const char *off = getenv("TSRUN_NO_SNAPSHOT");
  int k = 0;
  snprintf(blob, sizeof blob, "%s/dist/tsrun.blob", root);
  /* `tsrun pull` starts from a bundle of the pull verb alone (src/cli/pull-main.ts): a pull
   * runs for seconds, and from the snapshot its peak RSS was ~12 MB higher (81 against 69 MB,
   * docs/images.md "Memory of a pull": node keeps the 7 MB blob in memory, and more of the
   * pull's buffers stay live), from the whole CLI's bundle ~6 MB higher, for 16 ms less
   * start-up. Only the verb in first place: global options before it keep the snapshot. */
  int plain = argc > 1 && strcmp(argv[1], "pull") == 0;
  if (!plain && !(off && *off && strcmp(off, "0") != 0) && stamp_fits(root, node, sizeof node) && blob_loads(root, node, blob)) {
    args[k++] = node;
    args[k++] = "--snapshot-blob";
    args[k++] = blob;
    args[k++] = "--"; /* everything after is tsrun's, even "--version" */
    for (int i = 1; i < argc; i++) args[k++] = argv[i];
    execv(node, args);
    /* the stamp fitted but node did not start: the plain bundle still can */
  }
  snprintf(entry, sizeof entry, "%s/bin/%s", root, plain ? "tsrun-pull.mjs" : "tsrun-node.mjs");
  k = 0;
  args[k++] = "node";
  args[k++] = entry;
  for (int i = 1; i < argc; i++) args[k++] = argv[i];
  args[k] = NULL;
  execvp("node", args);
  fprintf(stderr, "tsrun: cannot run node: %s (install Node.js 20 or newer)\n", strerror(errno));
  return 125;
}
