/*
 * vulnerable-launcher: a DELIBERATELY VULNERABLE toy, the half of workshop lab 1 that is
 * not tsrun. It does what runc 1.0-rc6 did wrong: it runs a host executable inside a
 * container's PID namespace, with the container's capability bounding set, as the same
 * uid 0 the container's root has. A process in that container can then open the
 * executable through /proc/<pid>/exe and overwrite it (CVE-2019-5736).
 *
 *   vulnerable-launcher PID DECOY [ARG...]
 * joins the PID namespace of PID (a container's init), limits the bounding set to the one
 * PID has, and execs DECOY. Give it only a decoy: a copy of a program in a temporary
 * directory (`tsrun lab 1` does), never a binary the host uses.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

static unsigned long long capbnd(const char *pid) {
  char p[64], line[256];
  snprintf(p, sizeof p, "/proc/%s/status", pid);
  FILE *f = fopen(p, "r");
  unsigned long long v = 0;
  while (f && fgets(line, sizeof line, f))
    if (sscanf(line, "CapBnd: %llx", &v) == 1) break;
  if (f) fclose(f);
  return v;
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: %s PID DECOY [ARG...]\n", argv[0]);
    return 2;
  }
  char p[64];
  snprintf(p, sizeof p, "/proc/%s/ns/pid", argv[1]);
  unsigned long long bnd = capbnd(argv[1]);
  int ns = open(p, O_RDONLY | O_CLOEXEC);
  if (ns < 0 || setns(ns, CLONE_NEWPID) < 0) {
    fprintf(stderr, "vulnerable-launcher: join %s: %s\n", p, strerror(errno));
    return 1;
  }
  pid_t c = fork();
  if (c < 0) return 1;
  if (c == 0) {
    for (int cap = 0; cap < 64; cap++)
      if (!(bnd & (1ULL << cap))) prctl(PR_CAPBSET_DROP, cap, 0, 0, 0);
    execv(argv[2], argv + 2);
    fprintf(stderr, "vulnerable-launcher: exec %s: %s\n", argv[2], strerror(errno));
    _exit(127);
  }
  int st = 0;
  waitpid(c, &st, 0);
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}
