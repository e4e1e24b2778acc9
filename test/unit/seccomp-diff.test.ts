// Differential test: tsrun's compiler against libseccomp (the library runc and docker use).
// For the same profile, both programs run in tsrun's BPF interpreter for every syscall
// number of each arch (and the gaps and past-the-end numbers) and for boundary values of
// every argument rule; the verdicts must be identical. Needs gcc and libseccomp-dev; in
// CI their absence fails the test instead of skipping it.
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { ALL_CAPS, DOCKER_DEFAULT_CAPS } from '../../src/controls/capabilities.js';
import { ARCHES, X32_BIT, type ArchName } from '../../src/controls/seccomp/arch.js';
import { actionName, run, type Insn } from '../../src/controls/seccomp/bpf.js';
import { compile } from '../../src/controls/seccomp/compile.js';
import { SCMP_TO_ARCH, haveLibseccomp, libseccompProgram } from '../seccomp/libseccomp.js';
import { argVectors } from '../seccomp/vectors.js';
import { builtinProfile } from '../../src/controls/seccomp/default-profile.js';
import { parseDockerProfile, resolveDocker } from '../../src/controls/seccomp/profile.js';
import type { Seccomp } from '../../src/spec/types.js';

function without(s: Seccomp, names: string[]): Seccomp {
  return { ...s, syscalls: (s.syscalls ?? []).map((r) => ({ ...r, names: r.names.filter((n) => !names.includes(n)) })).filter((r) => r.names.length) };
}

/** Runs both programs over the domain; returns the differences (at most 20). */
function differences(s: Seccomp, ours: Insn[], theirs: Insn[], arches: ArchName[]): string[] {
  const diffs: string[] = [];
  let compared = 0;
  for (const name of arches) {
    const arch = ARCHES[name];
    const byNr = new Map(Object.entries(arch.table).map(([n, v]) => [v, n]));
    const base = name === 'x32' ? X32_BIT : 0;
    const max = Math.max(...Object.values(arch.table));
    const nrs: number[] = [];
    for (let nr = base; nr <= max + 20; nr++) nrs.push(nr);
    // (nr -1, a call a tracer skipped, runs nothing; libseccomp's verdict for it depends on its layout)
    nrs.push(base + 0x1000);
    if (name === 'x86_64') nrs.push(X32_BIT - 1);
    for (const nr of nrs) {
      const sysName = byNr.get(nr);
      const vectors = sysName ? argVectors([s], sysName, name !== 'x86') : [[0n, 0n, 0n, 0n, 0n, 0n]];
      for (const args of vectors) {
        const d = { nr, arch: arch.audit, args };
        const a = run(ours, d).ret;
        const b = run(theirs, d).ret;
        compared++;
        if (a !== b && diffs.length < 20) diffs.push(`${name} nr ${nr} (${sysName ?? '-'}) args ${args.map((x) => `0x${x.toString(16)}`).join(',')}: tsrun ${actionName(a)}, libseccomp ${actionName(b)}`);
      }
    }
  }
  expect(compared).toBeGreaterThan(500);
  return diffs;
}

function compare(s: Seccomp, native: 'x86_64' | 'aarch64'): { unknown: string[] } {
  const arches = [native, ...(s.architectures ?? []).map((a) => SCMP_TO_ARCH[a]).filter((a): a is ArchName => !!a && a !== native)];
  const ls = libseccompProgram(s, arches);
  const same = without(s, ls.unknown);
  const ours = compile(same, { native, enosysAboveTable: false });
  expect(differences(same, ours.prog, ls.prog, arches)).toEqual([]);
  return { unknown: ls.unknown };
}

const enabled = haveLibseccomp();
const d = enabled ? describe : process.env.CI === 'true' ? describe : describe.skip;

d('differential: tsrun vs libseccomp, verdicts in the BPF interpreter', () => {
  it('has gcc and libseccomp-dev (apt-get install -y libseccomp-dev)', () => {
    expect(enabled).toBe(true);
  });
  it('built-in profile, x86_64 + x86 + x32, default capabilities', () => {
    const s = resolveDocker(builtinProfile(), { caps: DOCKER_DEFAULT_CAPS, arch: 'x86_64', kernel: '6.18.0' });
    expect(s.architectures).toEqual(['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86', 'SCMP_ARCH_X32']);
    const { unknown } = compare(s, 'x86_64');
    // calls newer than libseccomp 2.5.4 (Debian 12): the only names it skips
    expect(unknown.every((n) => ['getxattrat', 'listmount', 'listxattrat', 'mseal', 'removexattrat', 'setxattrat', 'statmount', 'uretprobe', 'map_shadow_stack', 'futex_wake', 'futex_wait', 'futex_requeue', 'cachestat', 'fchmodat2'].includes(n))).toBe(true);
  });
  it('built-in profile with every capability (mount, unconditional clone, clone3 allowed)', () => {
    compare(resolveDocker(builtinProfile(), { caps: ALL_CAPS, arch: 'x86_64', kernel: '6.18.0' }), 'x86_64');
  });
  it('built-in profile on aarch64', () => {
    const s = resolveDocker(builtinProfile(), { caps: DOCKER_DEFAULT_CAPS, arch: 'aarch64', kernel: '6.18.0' });
    compare({ ...s, architectures: ['SCMP_ARCH_AARCH64'] }, 'aarch64');
  });
  it('every operator, 64-bit values, several actions, default ALLOW', () => {
    const p = parseDockerProfile({
      defaultAction: 'SCMP_ACT_ALLOW',
      syscalls: [
        { names: ['getppid', 'getpid'], action: 'SCMP_ACT_ERRNO', errnoRet: 123 },
        { names: ['dup'], action: 'SCMP_ACT_ERRNO', errnoRet: 9, args: [{ index: 0, value: 0x1_0000_0005, op: 'SCMP_CMP_GE' }] },
        { names: ['dup2'], action: 'SCMP_ACT_KILL_PROCESS', args: [{ index: 1, value: 9, op: 'SCMP_CMP_LE' }] },
        { names: ['dup3'], action: 'SCMP_ACT_KILL_THREAD', args: [{ index: 2, value: 0x8_0000_0000, op: 'SCMP_CMP_LT' }] },
        { names: ['close'], action: 'SCMP_ACT_TRAP', args: [{ index: 0, value: 0xf0_0000_00f0, valueTwo: 0x30_0000_0030, op: 'SCMP_CMP_MASKED_EQ' }] },
        { names: ['read'], action: 'SCMP_ACT_LOG', args: [{ index: 2, value: 7, op: 'SCMP_CMP_NE' }, { index: 0, value: 3, op: 'SCMP_CMP_GT' }] },
        { names: ['write'], action: 'SCMP_ACT_ERRNO', args: [{ index: 5, value: 0xffffffff, op: 'SCMP_CMP_EQ' }] },
        { names: ['write'], action: 'SCMP_ACT_ERRNO', args: [{ index: 4, value: 0x1_0000_0000, op: 'SCMP_CMP_EQ' }] },
        // an unconditional rule and argument rules for one call: the unconditional one decides, in either order
        { names: ['lseek'], action: 'SCMP_ACT_ERRNO', errnoRet: 3, args: [{ index: 0, value: 3, op: 'SCMP_CMP_EQ' }] },
        { names: ['lseek', 'fstat'], action: 'SCMP_ACT_ERRNO', errnoRet: 7 },
        { names: ['fstat'], action: 'SCMP_ACT_KILL_PROCESS', args: [{ index: 1, value: 3, op: 'SCMP_CMP_GT' }] },
        { names: ['mmap'], action: 'SCMP_ACT_ERRNO', errnoRet: 4 },
        { names: ['mmap'], action: 'SCMP_ACT_ERRNO', errnoRet: 5 },
      ],
    });
    compare(resolveDocker(p, { caps: [], arch: 'x86_64' }), 'x86_64');
    compare(resolveDocker(p, { caps: [], arch: 'aarch64' }), 'aarch64');
  });
});
