import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DOCKER_DEFAULT_CAPS } from '../src/controls/capabilities.js';
import { hostArch, type ArchName } from '../src/controls/seccomp/arch.js';
import { decode, encode, type Insn } from '../src/controls/seccomp/bpf.js';
import { actionValue, compile, pathStats } from '../src/controls/seccomp/compile.js';
import { builtinProfile } from '../src/controls/seccomp/default-profile.js';
import { resolveDocker } from '../src/controls/seccomp/profile.js';
import { LocalStore } from '../src/image/local-store.js';
import { PROJECT_ROOT } from '../src/kernel/native.js';
import type { Seccomp } from '../src/spec/types.js';
import { median, ratio } from './util.js';

// Issue 5's benchmark: the built-in (docker-default) profile compiled by tsrun and by
// libseccomp (its default layout and its binary tree): program length, BPF instructions
// executed per allowed call (interpreter, arguments zero), and the cost of cheap system
// calls in a container under each filter (the static probe loads the filter itself, so
// all three are loaded the same way).

const OPS: Record<string, number> = { SCMP_CMP_NE: 1, SCMP_CMP_LT: 2, SCMP_CMP_LE: 3, SCMP_CMP_EQ: 4, SCMP_CMP_GE: 5, SCMP_CMP_GT: 6, SCMP_CMP_MASKED_EQ: 7 };
const SCMP: Record<string, ArchName> = { SCMP_ARCH_X86_64: 'x86_64', SCMP_ARCH_X32: 'x32', SCMP_ARCH_X86: 'x86', SCMP_ARCH_AARCH64: 'aarch64' };

function libseccomp(harness: string, s: Seccomp, arches: ArchName[], optimize: number): { prog: Insn[]; unknown: string[] } {
  const lines = [...arches.map((a) => `arch ${a}`), `default ${actionValue(s.defaultAction, s.defaultErrnoRet).toString(16)}`, `optimize ${optimize}`];
  for (const r of s.syscalls ?? []) {
    const args = (r.args ?? []).map((a) => `${a.index} ${OPS[a.op]} ${a.value.toString(16)} ${(a.valueTwo ?? 0).toString(16)}`);
    for (const n of r.names) lines.push(`rule ${n} ${actionValue(r.action, r.errnoRet).toString(16)} ${args.join(' ')}`.trim());
  }
  const res = spawnSync(harness, [], { input: lines.join('\n') + '\n' });
  if (res.status !== 0) throw new Error(`libseccomp-bpf: ${res.stderr}`);
  return { prog: decode(new Uint8Array(res.stdout)), unknown: [...res.stderr.toString().matchAll(/^unknown (\S+)$/gm)].map((m) => m[1]!) };
}

export async function benchSeccomp(n: number): Promise<string> {
  const base = mkdtempSync(join(tmpdir(), 'tsrun-bench-seccomp-'));
  try {
    const native = hostArch();
    const harness = join(base, 'libseccomp-bpf');
    execFileSync('gcc', ['-O2', '-o', harness, join(PROJECT_ROOT, 'test', 'seccomp', 'libseccomp-bpf.c'), '-lseccomp']);
    const files = join(base, 'files');
    execFileSync('mkdir', ['-p', files]);
    execFileSync('gcc', ['-static', '-O2', '-o', join(files, 'probe'), join(PROJECT_ROOT, 'rootfs', 'probe.c')]);

    const full = resolveDocker(builtinProfile(), { caps: DOCKER_DEFAULT_CAPS, arch: native });
    const arches = [native, ...(full.architectures ?? []).map((a) => SCMP[a]).filter((a): a is ArchName => !!a && a !== native)];
    const lsDefault = libseccomp(harness, full, arches, 1);
    // the same profile for both: without the names libseccomp 2.5.4 does not know
    const same: Seccomp = { ...full, syscalls: full.syscalls!.map((r) => ({ ...r, names: r.names.filter((x) => !lsDefault.unknown.includes(x)) })).filter((r) => r.names.length) };
    const ours = compile(same, { native }).prog;
    const lsTree = libseccomp(harness, same, arches, 2).prog;
    const progs: [string, Insn[]][] = [
      ['tsrun', ours],
      ['libseccomp (default layout)', lsDefault.prog],
      ['libseccomp (binary tree, optimize=2)', lsTree],
    ];
    const rows = progs.map(([name, p]) => {
      const st = pathStats(p, native);
      writeFileSync(join(files, `${name.split(' ')[0]}${name.includes('tree') ? '-tree' : ''}.bpf`), encode(p));
      return { name, len: p.length, ...st };
    });

    // timed loops in a container (seccomp=unconfined: the probe loads each filter itself)
    const paths = { root: join(base, 'run'), data: join(base, 'data') };
    await new LocalStore(join(paths.data, 'images')).ensureBuiltin();
    const env = { ...process.env, TSRUN_ROOT: paths.root, TSRUN_DATA: paths.data };
    const bin = join(PROJECT_ROOT, 'bin', 'tsrun');
    const loops = Number(process.env.BENCH_SECCOMP_LOOPS ?? 200000);
    const rounds = Math.max(5, Math.min(n, 11));
    const filters: [string, string | undefined][] = [['no filter', undefined], ['tsrun', '/f/tsrun.bpf'], ['libseccomp (default layout)', '/f/libseccomp.bpf'], ['libseccomp (binary tree)', '/f/libseccomp-tree.bpf']];
    const timing = new Map<string, { g: number[]; p: number[] }>(filters.map(([k]) => [k, { g: [], p: [] }]));
    for (let r = 0; r < rounds; r++) {
      for (const [name, file] of filters) {
        const out = execFileSync(bin, ['run', '--rm', '--security-opt', 'seccomp=unconfined', '-v', `${files}:/f:ro`, 'busybox', '/f/probe', 'loop', String(loops), ...(file ? [file] : [])], { env, encoding: 'utf8' });
        const j = JSON.parse(out.trim().split('\n').at(-1)!) as { getppid_ns: number; personality_ns: number };
        timing.get(name)!.g.push(j.getppid_ns);
        timing.get(name)!.p.push(j.personality_ns);
      }
    }
    const med = (k: string) => ({ g: median(timing.get(k)!.g), p: median(timing.get(k)!.p) });
    const none = med('no filter');
    const ls = med('libseccomp (binary tree)');
    const lsd = med('libseccomp (default layout)');
    const ts = med('tsrun');

    return [
      `### Seccomp: the built-in profile on ${native} (${arches.join(', ')}), tsrun vs libseccomp ${execFileSync('dpkg-query', ['-W', '-f', '${Version}', 'libseccomp2'], { encoding: 'utf8' })}`,
      '',
      `Names libseccomp does not know, left out of both for the comparison: ${lsDefault.unknown.join(' ') || 'none'}.`,
      'Executed instructions: the BPF interpreter (src/controls/seccomp/bpf.ts) over every allowed call of the native table, arguments zero.',
      '"cacheable": allowed calls whose path reads only arch and nr, which the kernel (5.11+) then never runs the filter for.',
      '',
      '| compiler | instructions | allowed calls | mean executed | max executed | cacheable |',
      '|---|---|---|---|---|---|',
      ...rows.map((r) => `| ${r.name} | ${r.len} | ${r.allowed} | ${r.mean.toFixed(1)} | ${r.max} | ${r.cacheable} |`),
      '',
      `Cost per call in a container (median of ${rounds} runs of ${loops} calls each; getppid is cached by the kernel, personality(0xffffffff) runs the filter):`,
      '',
      '| filter | getppid | personality(-1) | personality vs libseccomp tree |',
      '|---|---|---|---|',
      `| no filter | ${none.g.toFixed(1)} ns | ${none.p.toFixed(1)} ns | |`,
      `| tsrun | ${ts.g.toFixed(1)} ns | ${ts.p.toFixed(1)} ns | ${ratio(ts.p, ls.p)} |`,
      `| libseccomp (binary tree) | ${ls.g.toFixed(1)} ns | ${ls.p.toFixed(1)} ns | 1.00× |`,
      `| libseccomp (default layout) | ${lsd.g.toFixed(1)} ns | ${lsd.p.toFixed(1)} ns | ${ratio(lsd.p, ls.p)} |`,
      '',
    ].join('\n');
  } finally {
    rmSync(base, { recursive: true, force: true });
  }
}
