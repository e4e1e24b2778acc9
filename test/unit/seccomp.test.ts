import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { DOCKER_DEFAULT_CAPS, capsFor } from '../../src/controls/capabilities.js';
import { applyPrivileged, setPrivilegedHooks } from '../../src/controls/privileged.js';
import { ARCHES, AUDIT_ARCH_AARCH64, AUDIT_ARCH_X86_64, X32_BIT } from '../../src/controls/seccomp/arch.js';
import { Assembler, BPF, RET, actionName, decode, disassemble, encode, label, run } from '../../src/controls/seccomp/bpf.js';
import { check, compile, pathStats } from '../../src/controls/seccomp/compile.js';
import { builtinProfile } from '../../src/controls/seccomp/default-profile.js';
import { applySeccompSecurityOpt, control, finishSeccomp, setSeccompDefault, setSeccompWarn } from '../../src/controls/seccomp/index.js';
import { parseDockerProfile, resolveDocker, validateOci } from '../../src/controls/seccomp/profile.js';
import type { ChildStep } from '../../src/plan/types.js';
import type { Seccomp } from '../../src/spec/types.js';
import { baseSpec, ctxFor } from './privileges-fixture.js';

const EPERM = (RET.ERRNO | 1) >>> 0;
const ENOSYS = (RET.ERRNO | 38) >>> 0;

function builtin(arch: 'x86_64' | 'aarch64', caps: readonly string[] = DOCKER_DEFAULT_CAPS) {
  return compile(resolveDocker(builtinProfile(), { caps, arch, kernel: '6.18.0' }), { native: arch });
}
const verdict = (c: ReturnType<typeof compile>, arch: 'x86_64' | 'aarch64' | 'x32' | 'x86', name: string, ...args: (number | bigint)[]) =>
  actionName(check(c, arch, name, args.map((a) => BigInt(a))).ret);

describe('syscall tables (generated from the kernel headers)', () => {
  it('has the numbers of x86_64, x32, i386 and aarch64', () => {
    expect(ARCHES.x86_64.table).toMatchObject({ read: 0, clone: 56, execve: 59, keyctl: 250, clone3: 435, set_mempolicy_home_node: 450, file_setattr: 469 });
    expect(ARCHES.x32.table).toMatchObject({ read: X32_BIT, rt_sigaction: X32_BIT + 512, execve: X32_BIT + 520 });
    expect(ARCHES.aarch64.table).toMatchObject({ io_setup: 0, execve: 221, clone: 220, renameat: 38, clone3: 435, mseal: 462 });
    expect(ARCHES.aarch64.table.open).toBeUndefined();
    expect(ARCHES.x86.table).toMatchObject({ socketcall: 102, chown32: 212 });
  });
});

describe('BPF', () => {
  it('encodes struct sock_filter little-endian and decodes it back', () => {
    const prog = [{ code: BPF.LD | BPF.W | BPF.ABS, jt: 0, jf: 0, k: 4 }, { code: BPF.JMP | BPF.JEQ | BPF.K, jt: 1, jf: 2, k: 0xc000003e }, { code: BPF.RET, jt: 0, jf: 0, k: RET.ALLOW }];
    const b = encode(prog);
    expect([...b.slice(8, 16)]).toEqual([0x15, 0, 1, 2, 0x3e, 0, 0, 0xc0]);
    expect(decode(b)).toEqual(prog);
  });
  it('inserts ja trampolines when a conditional jump is farther than 255', () => {
    const a = new Assembler();
    const far = label('far');
    const near = label('near');
    a.ldw(0);
    a.jmp(BPF.JEQ, 7, far, near);
    a.bind(near);
    for (let i = 0; i < 300; i++) a.ret(RET.KILL_PROCESS);
    a.bind(far);
    a.ret(RET.ALLOW);
    const { prog } = a.assemble();
    expect(prog.length).toBe(304);
    expect(prog[2]).toMatchObject({ code: BPF.JMP | BPF.JA, k: 300 }); // 2 + 1 + 300 = the ret ALLOW at 303
    expect(run(prog, { nr: 7, arch: 0 }).ret).toBe(RET.ALLOW);
    expect(run(prog, { nr: 8, arch: 0 }).ret).toBe(RET.KILL_PROCESS);
  });
  it('interprets 64-bit argument halves and counts instructions', () => {
    const a = new Assembler();
    const yes = label();
    const no = label();
    a.ldw(20); // args[0] high
    a.jmp(BPF.JEQ, 1, yes, no);
    a.bind(yes);
    a.ret(RET.ALLOW);
    a.bind(no);
    a.ret(EPERM);
    const { prog } = a.assemble();
    expect(run(prog, { nr: 0, arch: 0, args: [0x1_0000_0000n] })).toEqual({ ret: RET.ALLOW, steps: 3, readArgs: true });
    expect(run(prog, { nr: 0, arch: 0, args: [1n] }).ret).toBe(EPERM);
    expect(disassemble(prog)[0]).toMatch(/ld\s+\[20\]\s+args\[0\] \(high 32 bits\)/);
  });
});

describe('built-in profile (docker default behaviour)', () => {
  const x = builtin('x86_64');
  it('denies what docker denies, with EPERM, and clone3 with ENOSYS', () => {
    for (const n of ['keyctl', 'unshare', 'mount', 'setns', 'bpf', 'kexec_load', 'add_key', 'userfaultfd', 'io_uring_setup', 'io_uring_enter', 'io_uring_register', 'open_by_handle_at', 'chroot_x'].filter((n) => n in ARCHES.x86_64.table))
      expect(verdict(x, 'x86_64', n), n).toBe('ERRNO(EPERM)');
    expect(verdict(x, 'x86_64', 'clone3')).toBe('ERRNO(ENOSYS)');
    expect(verdict(x, 'x86_64', 'chroot')).toBe('ALLOW'); // CAP_SYS_CHROOT is a default capability
    expect(verdict(x, 'x86_64', 'name_to_handle_at')).toBe('ALLOW'); // as Docker since 2023; opening by handle stays gated
  });
  it('filters clone by namespace flags, socket by family, personality by value', () => {
    expect(verdict(x, 'x86_64', 'clone', 0x11)).toBe('ALLOW'); // SIGCHLD
    expect(verdict(x, 'x86_64', 'clone', 0x3d0f00)).toBe('ALLOW'); // pthread_create
    expect(verdict(x, 'x86_64', 'clone', 0x10000000)).toBe('ERRNO(EPERM)'); // CLONE_NEWUSER
    expect(verdict(x, 'x86_64', 'clone', 0x20000)).toBe('ERRNO(EPERM)'); // CLONE_NEWNS
    for (const [fam, v] of [[1, 'ALLOW'], [2, 'ALLOW'], [10, 'ALLOW'], [16, 'ALLOW'], [37, 'ALLOW'], [38, 'ERRNO(EPERM)'], [39, 'ALLOW'], [40, 'ERRNO(EPERM)'], [41, 'ALLOW']] as const)
      expect(verdict(x, 'x86_64', 'socket', fam), `family ${fam}`).toBe(v);
    // a family with high bits set is not AF_INET: compared as a 64-bit value
    expect(verdict(x, 'x86_64', 'socket', 0x1_0000_0026n)).toBe('ALLOW');
    for (const p of [0, 8, 0x20000, 0x20008, 0xffffffff]) expect(verdict(x, 'x86_64', 'personality', p)).toBe('ALLOW');
    expect(verdict(x, 'x86_64', 'personality', 0x0040000)).toBe('ERRNO(EPERM)'); // ADDR_NO_RANDOMIZE
  });
  it('counts: 309 of the x86_64 numbers 0..469 allowed (8 of them newer than libseccomp 2.5.4, which docker here would deny), ENOSYS above the table', () => {
    let allowed = 0;
    let eperm = 0;
    for (let nr = 0; nr <= 469; nr++) {
      const v = run(x.prog, { nr, arch: AUDIT_ARCH_X86_64 }).ret;
      if (v === RET.ALLOW) allowed++;
      else if (v === EPERM) eperm++;
    }
    expect(allowed).toBe(309);
    expect(eperm).toBe(470 - 309 - 1); // clone3 is ENOSYS
    expect(run(x.prog, { nr: 470, arch: AUDIT_ARCH_X86_64 }).ret).toBe(ENOSYS);
    expect(run(x.prog, { nr: 0x3fffffff, arch: AUDIT_ARCH_X86_64 }).ret).toBe(ENOSYS);
  });
  it('x32 calls go through their own table; unknown arches are killed', () => {
    expect(verdict(x, 'x32', 'read')).toBe('ALLOW');
    expect(verdict(x, 'x32', 'keyctl')).toBe('ERRNO(EPERM)');
    expect(run(x.prog, { nr: 0, arch: AUDIT_ARCH_AARCH64 }).ret).toBe(RET.KILL_PROCESS);
    const only64 = compile({ defaultAction: 'SCMP_ACT_ERRNO', architectures: ['SCMP_ARCH_X86_64'], syscalls: [{ names: ['execve', 'read'], action: 'SCMP_ACT_ALLOW' }] }, { native: 'x86_64' });
    expect(run(only64.prog, { nr: X32_BIT, arch: AUDIT_ARCH_X86_64 }).ret).toBe(RET.KILL_PROCESS);
  });
  it('keeps the kernel\'s constant-action cache working: allowed paths without argument rules read only arch and nr', () => {
    const s = pathStats(x.prog, 'x86_64');
    expect(s.allowed).toBe(309);
    expect(s.cacheable).toBe(s.allowed - 3); // socket, personality, clone read args[0]
    expect(s.mean).toBeLessThan(14.9); // libseccomp's binary tree, measured here
  });
  it('aarch64 gets its own numbers', () => {
    const a = builtin('aarch64');
    expect(verdict(a, 'aarch64', 'openat')).toBe('ALLOW');
    expect(verdict(a, 'aarch64', 'keyctl')).toBe('ERRNO(EPERM)');
    expect(verdict(a, 'aarch64', 'clone3')).toBe('ERRNO(ENOSYS)');
    expect(verdict(a, 'aarch64', 'clone', 0x10000000)).toBe('ERRNO(EPERM)');
    expect(a.arches).toEqual(['aarch64']);
    expect(a.notes.join()).toMatch(/SCMP_ARCH_ARM/);
  });
  it('capabilities enable their gated groups: CAP_SYS_ADMIN allows mount, any clone and clone3', () => {
    const c = builtin('x86_64', [...DOCKER_DEFAULT_CAPS, 'CAP_SYS_ADMIN']);
    expect(verdict(c, 'x86_64', 'mount')).toBe('ALLOW');
    expect(verdict(c, 'x86_64', 'clone', 0x10000000)).toBe('ALLOW');
    expect(verdict(c, 'x86_64', 'clone3')).toBe('ALLOW');
    const noChroot = builtin('x86_64', DOCKER_DEFAULT_CAPS.filter((n) => n !== 'CAP_SYS_CHROOT'));
    expect(verdict(noChroot, 'x86_64', 'chroot')).toBe('ERRNO(EPERM)');
  });
});

describe('profiles: custom rules, errors named by JSON path', () => {
  const base = (syscalls: unknown[], extra: Record<string, unknown> = {}) => ({ defaultAction: 'SCMP_ACT_ALLOW', syscalls, ...extra });
  it('honours errnoRet, 64-bit comparisons and every operator at its boundaries', () => {
    const p = parseDockerProfile(
      base([
        { names: ['getppid'], action: 'SCMP_ACT_ERRNO', errnoRet: 123 },
        { names: ['dup'], action: 'SCMP_ACT_ERRNO', args: [{ index: 0, value: 0x1_0000_0005, op: 'SCMP_CMP_GE' }] },
        { names: ['dup2'], action: 'SCMP_ACT_KILL_PROCESS', args: [{ index: 1, value: 9, op: 'SCMP_CMP_LE' }] },
        { names: ['close'], action: 'SCMP_ACT_TRAP', args: [{ index: 0, value: 0xf0, valueTwo: 0x30, op: 'SCMP_CMP_MASKED_EQ' }] },
        { names: ['read'], action: 'SCMP_ACT_LOG', args: [{ index: 2, value: 7, op: 'SCMP_CMP_NE' }, { index: 0, value: 3, op: 'SCMP_CMP_LT' }] },
      ]),
    );
    const c = compile(resolveDocker(p, { caps: [], arch: 'x86_64' }), { native: 'x86_64' });
    expect(verdict(c, 'x86_64', 'getppid')).toBe('ERRNO(errno 123)');
    expect(verdict(c, 'x86_64', 'dup', 0x1_0000_0004n)).toBe('ALLOW');
    expect(verdict(c, 'x86_64', 'dup', 0x1_0000_0005n)).toBe('ERRNO(EPERM)');
    expect(verdict(c, 'x86_64', 'dup', 0x2_0000_0000n)).toBe('ERRNO(EPERM)');
    expect(verdict(c, 'x86_64', 'dup', 0xffff_ffffn)).toBe('ALLOW');
    expect(verdict(c, 'x86_64', 'dup2', 0, 9)).toBe('KILL_PROCESS');
    expect(verdict(c, 'x86_64', 'dup2', 0, 10)).toBe('ALLOW');
    expect(verdict(c, 'x86_64', 'dup2', 0, 0x1_0000_0000n)).toBe('ALLOW');
    expect(verdict(c, 'x86_64', 'close', 0x3f)).toBe('TRAP');
    expect(verdict(c, 'x86_64', 'close', 0x1f)).toBe('ALLOW');
    expect(verdict(c, 'x86_64', 'read', 2, 0, 8)).toBe('LOG');
    expect(verdict(c, 'x86_64', 'read', 2, 0, 7)).toBe('ALLOW');
    expect(verdict(c, 'x86_64', 'read', 3, 0, 8)).toBe('ALLOW');
  });
  it('names the JSON path of bad input', () => {
    const bad = (syscalls: unknown[], extra = {}) => () => parseDockerProfile(base(syscalls, extra));
    expect(bad([{ names: ['a'], action: 'SCMP_ACT_ALLOW' }, {}, {}, { names: ['x'], action: 'SCMP_ACT_ALLOW', args: [{ index: 0, value: 1, op: 'SCMP_CMP_SOMETIMES' }] }])).toThrow(
      /^syscalls\[1\]\.action/,
    );
    expect(bad([{ names: ['x'], action: 'SCMP_ACT_ALLOW', args: [{ index: 0, value: 1, op: 'SCMP_CMP_SOMETIMES' }] }])).toThrow(/^syscalls\[0\]\.args\[0\]\.op: unknown operator "SCMP_CMP_SOMETIMES"/);
    expect(bad([{ names: ['x'], action: 'SCMP_ACT_ALLOW', args: [{ index: 6, value: 1, op: 'SCMP_CMP_EQ' }] }])).toThrow(/^syscalls\[0\]\.args\[0\]\.index: expected 0\.\.5/);
    expect(bad([{ names: ['x'], action: 'SCMP_ACT_MAYBE' }])).toThrow(/^syscalls\[0\]\.action: unknown action "SCMP_ACT_MAYBE"/);
    expect(bad([{ names: ['x'], action: 'SCMP_ACT_TRACE' }])).toThrow(/^syscalls\[0\]\.action: SCMP_ACT_TRACE is not supported/);
    expect(bad([{ names: ['x'], action: 'SCMP_ACT_NOTIFY' }])).toThrow(/not supported/);
    expect(bad([{ names: ['x'], action: 'SCMP_ACT_ERRNO', errnoRet: -1 }])).toThrow(/^syscalls\[0\]\.errnoRet/);
    expect(bad([], { architectures: ['SCMP_ARCH_PDP11'] })).toThrow(/^architectures\[0\]: unknown architecture/);
    expect(() => validateOci({ defaultAction: 'SCMP_ACT_ERRNO', syscalls: [{ names: ['read'], action: 'SCMP_ACT_ALLOW', args: [{ index: 0, op: 'LT' }] }] })).toThrow(/^syscalls\[0\]\.args\[0\]\.op/);
  });
  it('refuses a profile that blocks execve', () => {
    const s: Seccomp = { defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['execve'], action: 'SCMP_ACT_ERRNO' }] };
    expect(() => compile(s, { native: 'x86_64' })).toThrow(/denies execve \(ERRNO\(EPERM\)\)/);
    expect(() => compile({ defaultAction: 'SCMP_ACT_KILL', syscalls: [{ names: ['read'], action: 'SCMP_ACT_ALLOW' }] }, { native: 'x86_64' })).toThrow(/denies execve \(KILL_THREAD\)/);
  });
  it('skips unknown names with one warning listing them', () => {
    const c = compile({ defaultAction: 'SCMP_ACT_ERRNO', syscalls: [{ names: ['execve', 'frobnicate', 'chown32', 'teleport'], action: 'SCMP_ACT_ALLOW' }] }, { native: 'x86_64' });
    expect(c.warnings).toEqual(['unknown system calls, skipped: frobnicate, teleport']);
  });
  it('resolves includes/excludes: caps, arches, minKernel', () => {
    const p = parseDockerProfile({
      defaultAction: 'SCMP_ACT_ERRNO',
      syscalls: [
        { names: ['a'], action: 'SCMP_ACT_ALLOW', includes: { minKernel: '7.0' } },
        { names: ['b'], action: 'SCMP_ACT_ALLOW', includes: { arches: ['arm64'] } },
        { names: ['c'], action: 'SCMP_ACT_ALLOW', excludes: { caps: ['CAP_KILL'] } },
        { names: ['d'], action: 'SCMP_ACT_ALLOW', includes: { caps: ['KILL', 'CAP_CHOWN'] } },
      ],
    });
    const names = (k: string) => resolveDocker(p, { caps: ['CAP_KILL', 'CAP_CHOWN'], arch: 'x86_64', kernel: k }).syscalls!.flatMap((r) => r.names);
    expect(names('6.18.0')).toEqual(['d']);
    expect(names('7.1.0-rc1')).toEqual(['a', 'd']);
  });
});

describe('the seccomp control', () => {
  setPrivilegedHooks({ warn: () => {}, devices: () => [] });
  setSeccompWarn(() => {});
  it('puts the resolved built-in profile into the spec; unconfined and --privileged remove it', () => {
    const s = baseSpec();
    s.process.capabilities = capsFor(DOCKER_DEFAULT_CAPS);
    setSeccompDefault(s);
    finishSeccomp(s);
    expect(s.linux.seccomp?.defaultAction).toBe('SCMP_ACT_ERRNO');
    expect(s.linux.seccomp?.syscalls?.length).toBe(15);
    expect(applySeccompSecurityOpt(s, 'seccomp=unconfined')).toBe(true);
    finishSeccomp(s);
    expect(s.linux.seccomp).toBeUndefined();
    const p = baseSpec();
    setSeccompDefault(p);
    applyPrivileged(p);
    finishSeccomp(p);
    expect(p.linux.seccomp).toBeUndefined();
    expect(applySeccompSecurityOpt(p, 'no-new-privileges')).toBe(false);
    // the config file's "seccomp-profile": unconfined, builtin, or a file; a flag still wins
    const c = baseSpec();
    setSeccompDefault(c, 'unconfined');
    finishSeccomp(c);
    expect(c.linux.seccomp).toBeUndefined();
    setSeccompDefault(c, 'builtin');
    applySeccompSecurityOpt(c, 'seccomp=unconfined');
    finishSeccomp(c);
    expect(c.linux.seccomp).toBeUndefined();
    expect(() => setSeccompDefault(baseSpec(), '/no/such/profile.json')).toThrow(/^config "seccomp-profile": \/no\/such\/profile.json: ENOENT/);
  });
  it('reads a profile file; errors name the flag, the file and the JSON path', () => {
    const dir = mkdtempSync(join(tmpdir(), 'seccomp-'));
    const f = join(dir, 'p.json');
    writeFileSync(f, JSON.stringify({ defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['getppid'], action: 'SCMP_ACT_ERRNO', errnoRet: 99 }] }));
    const s = baseSpec();
    applySeccompSecurityOpt(s, `seccomp=${f}`);
    finishSeccomp(s);
    expect(s.linux.seccomp?.syscalls).toEqual([{ names: ['getppid'], action: 'SCMP_ACT_ERRNO', errnoRet: 99 }]);
    writeFileSync(f, '{"defaultAction": ');
    expect(() => applySeccompSecurityOpt(baseSpec(), `seccomp=${f}`)).toThrow(new RegExp(`^--security-opt seccomp=${f}: ${f}: \\(json\\): invalid JSON`));
    expect(() => applySeccompSecurityOpt(baseSpec(), `seccomp=${dir}/missing.json`)).toThrow(/ENOENT/);
    rmSync(dir, { recursive: true });
  });
  it('loads the filter last under no_new_privs, before the capability drop without it', () => {
    const s = baseSpec();
    s.linux.seccomp = resolveDocker(builtinProfile(), { caps: DOCKER_DEFAULT_CAPS, arch: 'x86_64' });
    const [early] = control.steps(ctxFor(s)) as ChildStep[];
    expect(early).toMatchObject({ phase: 'seccomp-early', op: 'SECCOMP', ints: [0n] });
    expect(early!.blob!.length % 8).toBe(0);
    s.process.noNewPrivileges = true;
    expect((control.steps(ctxFor(s)) as ChildStep[])[0]!.phase).toBe('seccomp');
    const bad = baseSpec();
    bad.linux.seccomp = { defaultAction: 'SCMP_ACT_ERRNO', syscalls: [{ names: ['read'], action: 'SCMP_ACT_FOO' }] };
    expect(() => control.validate!(ctxFor(bad))).toThrow(/^linux\.seccomp\.syscalls\[0\]\.action: unknown action/);
    expect(control.steps(ctxFor(baseSpec()))).toEqual([]);
  });
});
