// Runs test/seccomp/libseccomp-bpf.c (built on first use into test/.cache): libseccomp's BPF
// for an OCI profile, for the differential tests (unit) and the real-kernel sample.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { ArchName } from '../../src/controls/seccomp/arch.js';
import { decode, type Insn } from '../../src/controls/seccomp/bpf.js';
import { actionValue } from '../../src/controls/seccomp/compile.js';
import type { Seccomp } from '../../src/spec/types.js';

const ROOT = join(import.meta.dirname, '..', '..');
const HARNESS = join(ROOT, 'test', '.cache', 'libseccomp-bpf');
const OPS: Record<string, number> = { SCMP_CMP_NE: 1, SCMP_CMP_LT: 2, SCMP_CMP_LE: 3, SCMP_CMP_EQ: 4, SCMP_CMP_GE: 5, SCMP_CMP_GT: 6, SCMP_CMP_MASKED_EQ: 7 };
export const SCMP_TO_ARCH: Record<string, ArchName> = { SCMP_ARCH_X86_64: 'x86_64', SCMP_ARCH_X32: 'x32', SCMP_ARCH_X86: 'x86', SCMP_ARCH_AARCH64: 'aarch64' };

export function haveLibseccomp(): boolean {
  return spawnSync('sh', ['-c', 'command -v gcc && test -e /usr/include/seccomp.h'], { encoding: 'utf8' }).status === 0;
}

export function buildHarness(): string {
  const src = join(ROOT, 'test', 'seccomp', 'libseccomp-bpf.c');
  if (!existsSync(HARNESS) || statSync(HARNESS).mtimeMs < statSync(src).mtimeMs) {
    mkdirSync(join(ROOT, 'test', '.cache'), { recursive: true });
    execFileSync('gcc', ['-O2', '-Wall', '-o', HARNESS, src, '-lseccomp']);
  }
  return HARNESS;
}

/** libseccomp's program for an OCI profile, and the names it did not know. */
export function libseccompProgram(s: Seccomp, arches: ArchName[], optimize = 1): { prog: Insn[]; unknown: string[] } {
  const lines = arches.map((a) => `arch ${a}`);
  lines.push(`default ${actionValue(s.defaultAction, s.defaultErrnoRet).toString(16)}`, `optimize ${optimize}`);
  for (const r of s.syscalls ?? []) {
    const act = actionValue(r.action, r.errnoRet).toString(16);
    const args = (r.args ?? []).map((a) =>
      a.op === 'SCMP_CMP_MASKED_EQ' ? `${a.index} 7 ${a.value.toString(16)} ${(a.valueTwo ?? 0).toString(16)}` : `${a.index} ${OPS[a.op]} ${a.value.toString(16)} 0`,
    );
    for (const n of r.names) lines.push(`rule ${n} ${act} ${args.join(' ')}`.trim());
  }
  const res = spawnSync(buildHarness(), [], { input: lines.join('\n') + '\n', maxBuffer: 1 << 24 });
  const err = res.stderr.toString();
  if (res.status !== 0) throw new Error(`libseccomp-bpf exited ${res.status}: ${err}`);
  const unknown = [...err.matchAll(/^unknown (\S+)$/gm)].map((m) => m[1]!);
  return { prog: decode(new Uint8Array(res.stdout)), unknown };
}

