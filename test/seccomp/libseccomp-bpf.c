/*
 * libseccomp-bpf: builds a filter with libseccomp (the reference) and writes its BPF
 * (struct sock_filter[]) to stdout, so the tests can run it in tsrun's interpreter next to
 * tsrun's own program for the same profile. Built by test/unit/seccomp-diff.test.ts:
 *   gcc -O2 -o libseccomp-bpf libseccomp-bpf.c -lseccomp
 * Input on stdin, one directive a line (values in hex):
 *   arch NAME          x86_64 | x32 | x86 | aarch64; the first is the filter's native arch
 *   default ACTION     32-bit SECCOMP_RET_* value
 *   optimize N         SCMP_FLTATR_CTL_OPTIMIZE (1 = priority list, 2 = binary tree)
 *   rule NAME ACTION [INDEX OP A B]...   OP: 1 NE, 2 LT, 3 LE, 4 EQ, 5 GE, 6 GT, 7 MASKED_EQ
 * Names libseccomp does not know on any listed arch are reported on stderr as
 * "unknown NAME" and skipped, as runc does. Bad-arch action: KILL_PROCESS (as tsrun).
 */
#include <errno.h>
#include <seccomp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint32_t arch_token(const char *n) {
  if (!strcmp(n, "x86_64")) return SCMP_ARCH_X86_64;
  if (!strcmp(n, "x32")) return SCMP_ARCH_X32;
  if (!strcmp(n, "x86")) return SCMP_ARCH_X86;
  if (!strcmp(n, "aarch64")) return SCMP_ARCH_AARCH64;
  fprintf(stderr, "unknown arch %s\n", n);
  exit(2);
}

int main(void) {
  char line[4096];
  scmp_filter_ctx ctx = NULL;
  uint32_t arches[8];
  int narch = 0, optimize = 1;
  uint32_t def = 0;
  char *rules[1024];
  int nrules = 0;
  while (fgets(line, sizeof line, stdin)) {
    line[strcspn(line, "\n")] = 0;
    char *save, *tok = strtok_r(line, " ", &save);
    if (!tok) continue;
    if (!strcmp(tok, "arch")) arches[narch++] = arch_token(strtok_r(NULL, " ", &save));
    else if (!strcmp(tok, "default")) def = (uint32_t)strtoul(strtok_r(NULL, " ", &save), NULL, 16);
    else if (!strcmp(tok, "optimize")) optimize = atoi(strtok_r(NULL, " ", &save));
    else if (!strcmp(tok, "rule")) rules[nrules++] = strdup(save);
  }
  ctx = seccomp_init(def);
  if (!ctx) return 3;
  if (seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS)) return 4;
  if (optimize != 1 && seccomp_attr_set(ctx, SCMP_FLTATR_CTL_OPTIMIZE, (uint32_t)optimize)) return 5;
  if (narch && arches[0] != seccomp_arch_native()) {
    if (seccomp_arch_add(ctx, arches[0])) return 6;
    if (seccomp_arch_remove(ctx, SCMP_ARCH_NATIVE)) return 7;
  }
  for (int i = 1; i < narch; i++)
    if (seccomp_arch_add(ctx, arches[i]) && errno != EEXIST) return 8;
  for (int r = 0; r < nrules; r++) {
    char *save, *name = strtok_r(rules[r], " ", &save);
    uint32_t action = (uint32_t)strtoul(strtok_r(NULL, " ", &save), NULL, 16);
    struct scmp_arg_cmp cmp[6];
    unsigned n = 0;
    char *t;
    while ((t = strtok_r(NULL, " ", &save)) && n < 6) {
      cmp[n].arg = (unsigned)atoi(t);
      cmp[n].op = (enum scmp_compare)atoi(strtok_r(NULL, " ", &save));
      cmp[n].datum_a = strtoull(strtok_r(NULL, " ", &save), NULL, 16);
      cmp[n].datum_b = strtoull(strtok_r(NULL, " ", &save), NULL, 16);
      n++;
    }
    int known = 0;
    for (int a = 0; a < narch; a++)
      if (seccomp_syscall_resolve_name_arch(arches[a], name) >= 0) known = 1;
    if (!known) {
      fprintf(stderr, "unknown %s\n", name);
      continue;
    }
    if (action == def) continue; /* libseccomp refuses a rule with the default action; runc skips it */
    int nr = seccomp_syscall_resolve_name(name);
    int rc = seccomp_rule_add_array(ctx, action, nr, n, cmp);
    if (rc) {
      fprintf(stderr, "rule %s: %s\n", name, strerror(-rc));
      return 9;
    }
  }
  return seccomp_export_bpf(ctx, 1) ? 10 : 0;
}
