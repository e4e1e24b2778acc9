// OCI linux.seccomp → a classic BPF program for seccomp(SECCOMP_SET_MODE_FILTER).
//
// Layout (docs/seccomp.md draws it):
//   ld arch; jeq AUDIT_ARCH_<a> → section a ... ; ret <bad arch>
//   section: ld nr; a balanced binary search (jge) over ranges of syscall numbers that
//   share one outcome; each leaf is a `ret`, or, for a call with argument rules, the rule
//   checks (64-bit arguments compared as two 32-bit halves, high half first).
//   On x86_64 numbers with bit 30 set are x32 calls: their own section when the profile
//   lists SCMP_ARCH_X32, the bad-arch action otherwise. Numbers above the highest call in
//   our table return ENOSYS, so a libc newer than the profile falls back (as for clone3).
// Every path to a verdict that does not depend on arguments reads only `arch` and `nr`:
// the kernel (5.11+, seccomp_cache_prepare) emulates the filter per syscall number and
// skips it entirely for numbers that are always allowed.
import type { Seccomp } from '../../spec/types.js';
import { ARCHES, X32_BIT, isKnownName, namesByNumber, type ArchInfo, type ArchName } from './arch.js';
import { Assembler, BPF, DATA, RET, actionName, disassemble, encode, label, run, type Insn, type Label } from './bpf.js';
import { FILTER_FLAGS, ProfileError, compiledArches, type ArgRule } from './profile.js';

const EPERM = 1;
const ENOSYS = 38;

export interface CompileOptions {
  /** the arch of the processes the filter will run in (the first section) */
  native: 'x86_64' | 'aarch64';
  /** action for a foreign calling convention; KILL_PROCESS, as a call we cannot read is not a call we can allow */
  badArch?: number;
  /** annotate the listing (names of each range): slower, for `tsrun seccomp compile` */
  comments?: boolean;
  /** ERRNO(ENOSYS) above the highest known number when the default action denies (default true) */
  enosysAboveTable?: boolean;
}

export interface Compiled {
  prog: Insn[];
  comments: (string | undefined)[];
  bytes: Uint8Array;
  /** SECCOMP_FILTER_FLAG_* for seccomp(2) */
  flags: number;
  arches: ArchName[];
  /** unknown system call names (the user should hear of them) */
  warnings: string[];
  /** listed architectures tsrun does not compile (shown in the listing) */
  notes: string[];
  defaultAction: number;
}

/** An OCI action (+ errno) as the 32-bit seccomp return value. */
export function actionValue(action: string, errnoRet: number | undefined, fallbackErrno = EPERM): number {
  switch (action) {
    case 'SCMP_ACT_ALLOW': return RET.ALLOW;
    case 'SCMP_ACT_ERRNO': return (RET.ERRNO | ((errnoRet ?? fallbackErrno) & 0xffff)) >>> 0;
    case 'SCMP_ACT_KILL':
    case 'SCMP_ACT_KILL_THREAD': return RET.KILL_THREAD;
    case 'SCMP_ACT_KILL_PROCESS': return RET.KILL_PROCESS;
    case 'SCMP_ACT_TRAP': return RET.TRAP;
    case 'SCMP_ACT_LOG': return RET.LOG;
    default: throw new ProfileError('action', `${action} is not supported by tsrun`);
  }
}

interface CondRule {
  args: ArgRule[];
  action: number;
}
interface Outcome {
  conds: CondRule[];
  /** the action when no argument rule matches */
  fallback: number;
  names: string[];
}

type Leaf = { kind: 'ret'; action: number; comment: string } | { kind: 'args'; nr: number; outcome: Outcome } | { kind: 'sub'; emit: (a: Assembler) => void; comment: string };
interface Range {
  lo: number;
  hi: number;
  leaf: Leaf;
}

function isAllowLike(a: number): boolean {
  return a === RET.ALLOW || a === RET.LOG;
}

/** Collects, per syscall number of one arch, the profile's rules for it. */
function outcomes(s: Seccomp, arch: ArchInfo, def: number, unknown: Set<string>): Map<number, Outcome> {
  const map = new Map<number, Outcome & { uncond?: number }>();
  (s.syscalls ?? []).forEach((r) => {
    const act = actionValue(r.action, r.errnoRet);
    // A rule with the default action changes nothing (runc leaves such rules out too).
    if (act === def) return;
    for (const name of r.names) {
      const nr = arch.table[name];
      if (nr === undefined) {
        if (!isKnownName(name)) unknown.add(name);
        continue;
      }
      const o = map.get(nr) ?? { conds: [], fallback: def, names: [name] };
      if (!o.names.includes(name)) o.names.push(name);
      if (r.args?.length) o.conds.push({ args: r.args as ArgRule[], action: act });
      else if (o.uncond === undefined) {
        o.uncond = act;
        o.fallback = act;
      }
      map.set(nr, o);
    }
  });
  for (const o of map.values()) {
    // An unconditional rule decides the call whatever its arguments, and the first one
    // wins (libseccomp's semantics: argument rules for the same call are subsumed);
    // argument rules with the call's fallback action add nothing.
    o.conds = o.uncond !== undefined ? [] : o.conds.filter((c) => c.action !== o.fallback);
  }
  return map;
}

function namesComment(names: string[], max = 6): string {
  return names.length <= max ? names.join(' ') : `${names.slice(0, max).join(' ')} … (${names.length})`;
}

/** Comments cost time and are only read by `tsrun seccomp compile`: compile() sets this per call. */
let withComments = false;

/** Ranges over [lo, hi] of one arch's numbers, equal neighbours merged. */
function ranges(arch: ArchInfo, out: Map<number, Outcome>, def: number, lo: number, max: number): Range[] {
  const byNr = namesByNumber(arch);
  const list: Range[] = [];
  for (let nr = lo; nr <= max; nr++) {
    const o = out.get(nr);
    const name = byNr.get(nr);
    if (o && o.conds.length) {
      list.push({ lo: nr, hi: nr, leaf: { kind: 'args', nr, outcome: o } });
      continue;
    }
    const action = o ? o.fallback : def;
    const prev = list[list.length - 1];
    if (prev && prev.leaf.kind === 'ret' && prev.leaf.action === action && prev.hi === nr - 1) {
      prev.hi = nr;
      if (name) (prev as Range & { names: string[] }).names.push(name);
      continue;
    }
    const r = { lo: nr, hi: nr, leaf: { kind: 'ret', action, comment: '' } as Leaf, names: name ? [name] : [] };
    list.push(r);
  }
  if (withComments)
    for (const r of list as (Range & { names?: string[] })[]) {
      if (r.leaf.kind === 'ret') r.leaf.comment = `${r.lo === r.hi ? `nr ${nr32(r.lo)}` : `nr ${nr32(r.lo)}..${nr32(r.hi)}`}${r.names?.length ? `: ${namesComment(r.names)}` : ' (no call)'}`;
    }
  return list;
}

function nr32(n: number): string {
  return n >= X32_BIT ? `x32+${n - X32_BIT}` : String(n);
}

function split64(v: number): [number, number] {
  const b = BigInt(v);
  return [Number(b >> 32n) >>> 0, Number(b & 0xffffffffn) >>> 0];
}

/** One argument comparison on a 32-bit ABI: the low half only (the value truncated). */
function emitArg32(a: Assembler, r: ArgRule, pass: Label, fail: Label): void {
  const off = DATA.args + 8 * r.index;
  const v = split64(r.value)[1];
  const what = `args[${r.index}] (32-bit ABI)`;
  switch (r.op) {
    case 'SCMP_CMP_EQ':
    case 'SCMP_CMP_NE':
      a.ldw(off, `${what} ${r.op === 'SCMP_CMP_EQ' ? '==' : '!='} ${v}?`);
      a.jmp(BPF.JEQ, v, r.op === 'SCMP_CMP_EQ' ? pass : fail, r.op === 'SCMP_CMP_EQ' ? fail : pass);
      return;
    case 'SCMP_CMP_MASKED_EQ':
      a.ldw(off, `(${what} & 0x${split64(r.value)[1].toString(16)}) == 0x${split64(r.valueTwo ?? 0)[1].toString(16)}?`);
      a.and(split64(r.value)[1]);
      a.jmp(BPF.JEQ, split64(r.valueTwo ?? 0)[1], pass, fail);
      return;
    case 'SCMP_CMP_GT':
    case 'SCMP_CMP_GE':
      a.ldw(off, `${what} ${r.op === 'SCMP_CMP_GT' ? '>' : '>='} ${v}?`);
      a.jmp(r.op === 'SCMP_CMP_GT' ? BPF.JGT : BPF.JGE, v, pass, fail);
      return;
    case 'SCMP_CMP_LT':
    case 'SCMP_CMP_LE':
      a.ldw(off, `${what} ${r.op === 'SCMP_CMP_LT' ? '<' : '<='} ${v}?`);
      a.jmp(r.op === 'SCMP_CMP_LT' ? BPF.JGE : BPF.JGT, v, fail, pass);
      return;
  }
}

/** One argument comparison: jumps to pass or fail. */
function emitArg(a: Assembler, r: ArgRule, pass: Label, fail: Label, bits: 32 | 64): void {
  if (bits === 32) return emitArg32(a, r, pass, fail);
  const hiOff = DATA.args + 8 * r.index + 4;
  const loOff = DATA.args + 8 * r.index;
  const [vhi, vlo] = split64(r.value);
  const what = `args[${r.index}]`;
  const lh = label('lo');
  switch (r.op) {
    case 'SCMP_CMP_EQ':
    case 'SCMP_CMP_NE': {
      const eq = r.op === 'SCMP_CMP_EQ';
      a.ldw(hiOff, `${what} ${eq ? '==' : '!='} ${r.value}?`);
      a.jmp(BPF.JEQ, vhi, lh, eq ? fail : pass);
      a.bind(lh);
      a.ldw(loOff);
      a.jmp(BPF.JEQ, vlo, eq ? pass : fail, eq ? fail : pass);
      return;
    }
    case 'SCMP_CMP_MASKED_EQ': {
      const [mhi, mlo] = split64(r.value);
      const [dhi, dlo] = split64(r.valueTwo ?? 0);
      const c = `(${what} & 0x${r.value.toString(16)}) == 0x${(r.valueTwo ?? 0).toString(16)}?`;
      if (mhi !== 0 || dhi !== 0) {
        a.ldw(hiOff, c);
        a.and(mhi);
        a.jmp(BPF.JEQ, dhi, lh, fail);
        a.bind(lh);
        a.ldw(loOff);
      } else a.ldw(loOff, `${c} (high half: mask 0)`);
      a.and(mlo);
      a.jmp(BPF.JEQ, dlo, pass, fail);
      return;
    }
    case 'SCMP_CMP_GT':
    case 'SCMP_CMP_GE': {
      const lc = label('eq');
      a.ldw(hiOff, `${what} ${r.op === 'SCMP_CMP_GT' ? '>' : '>='} ${r.value}? (unsigned 64-bit)`);
      a.jmp(BPF.JGT, vhi, pass, lc);
      a.bind(lc);
      a.jmp(BPF.JEQ, vhi, lh, fail);
      a.bind(lh);
      a.ldw(loOff);
      a.jmp(r.op === 'SCMP_CMP_GT' ? BPF.JGT : BPF.JGE, vlo, pass, fail);
      return;
    }
    case 'SCMP_CMP_LT':
    case 'SCMP_CMP_LE': {
      const lc = label('eq');
      a.ldw(hiOff, `${what} ${r.op === 'SCMP_CMP_LT' ? '<' : '<='} ${r.value}? (unsigned 64-bit)`);
      a.jmp(BPF.JGT, vhi, fail, lc);
      a.bind(lc);
      a.jmp(BPF.JEQ, vhi, lh, pass);
      a.bind(lh);
      a.ldw(loOff);
      a.jmp(r.op === 'SCMP_CMP_LT' ? BPF.JGE : BPF.JGT, vlo, fail, pass);
      return;
    }
  }
}

function emitLeaf(a: Assembler, leaf: Leaf, bits: 32 | 64): void {
  if (leaf.kind === 'ret') return a.ret(leaf.action, leaf.comment);
  if (leaf.kind === 'sub') return leaf.emit(a);
  const o = leaf.outcome;
  o.conds.forEach((c, ci) => {
    const next = label('next-rule');
    c.args.forEach((arg) => {
      const pass = label('pass');
      emitArg(a, arg, pass, next, bits);
      a.bind(pass);
    });
    a.ret(c.action, `${namesComment(o.names)}: rule ${ci + 1} matched`);
    a.bind(next);
  });
  a.ret(o.fallback, `${namesComment(o.names)}: no argument rule matched`);
}

/** Balanced binary search over ranges (sorted, contiguous). */
function emitTree(a: Assembler, rs: Range[], arch: ArchInfo): void {
  if (rs.length === 1) {
    const r = rs[0]!;
    if (r.leaf.kind === 'args') {
      const nm = r.leaf.outcome.names.join(' ');
      const start = a.insns.length;
      emitLeaf(a, r.leaf, arch.argBits);
      const i = a.insns[start];
      if (i) i.comment = `${nm} (nr ${nr32(r.lo)}): ${i.comment ?? ''}`;
      return;
    }
    return emitLeaf(a, r.leaf, arch.argBits);
  }
  const mid = rs.length >> 1;
  const left = label('left');
  const right = label('right');
  const pivot = rs[mid]!.lo;
  a.jmp(BPF.JGE, pivot, right, left, `nr >= ${nr32(pivot)}?`);
  a.bind(left);
  emitTree(a, rs.slice(0, mid), arch);
  a.bind(right);
  emitTree(a, rs.slice(mid), arch);
}

function maxNr(t: Readonly<Record<string, number>>): number {
  return Math.max(...Object.values(t));
}

/** Compiles a resolved (OCI) profile for the arches it names that tsrun supports. */
export function compile(s: Seccomp, opts: CompileOptions): Compiled {
  withComments = opts.comments === true;
  const def = actionValue(s.defaultAction, s.defaultErrnoRet);
  const badArch = opts.badArch ?? RET.KILL_PROCESS;
  const { arches, skipped } = compiledArches(s, opts.native);
  const warnings: string[] = [];
  const notes: string[] = [];
  if (skipped.length) notes.push(`architectures ${skipped.join(', ')}: tsrun compiles x86_64, x32, x86 and aarch64 only; calls through those ABIs get ${actionName(badArch)}`);
  const unknown = new Set<string>();
  const above = opts.enosysAboveTable !== false && !isAllowLike(def) ? (RET.ERRNO | ENOSYS) >>> 0 : def;
  const aboveComment = above === def ? 'newer than our table: default action' : 'newer than our table: ENOSYS, so libc falls back';

  const section = (name: ArchName, withX32: boolean): Range[] => {
    const arch = ARCHES[name];
    const out = outcomes(s, arch, def, unknown);
    const base = name === 'x32' ? X32_BIT : 0;
    const max = maxNr(arch.table);
    const rs = ranges(arch, out, def, base, max);
    const end = name === 'x86_64' ? X32_BIT - 1 : 0xffffffff;
    if (max < end) rs.push({ lo: max + 1, hi: end, leaf: { kind: 'ret', action: above, comment: `nr ${nr32(max + 1)}..: ${aboveComment}` } });
    if (name === 'x86_64') {
      if (withX32) {
        const x32 = section('x32', false);
        rs.push({ lo: X32_BIT, hi: 0xffffffff, leaf: { kind: 'sub', comment: 'x32', emit: (a) => emitTree(a, x32, ARCHES.x32) } });
      } else rs.push({ lo: X32_BIT, hi: 0xfffffffe, leaf: { kind: 'ret', action: badArch, comment: 'x32 call (bit 30 set) and the profile does not list SCMP_ARCH_X32' } });
      // nr -1: a tracer cancelled the call (ptrace(2)); nothing runs, so not a foreign ABI
      if (!withX32) rs.push({ lo: 0xffffffff, hi: 0xffffffff, leaf: { kind: 'ret', action: above, comment: 'nr -1: a call a tracer skipped' } });
    }
    return rs;
  };

  const a = new Assembler();
  const top = arches.filter((n) => n !== 'x32');
  const withX32 = arches.includes('x32');
  if (withX32 && !top.includes('x86_64')) warnings.push('SCMP_ARCH_X32 without SCMP_ARCH_X86_64: x32 calls get the bad-arch action');
  const secLabels = top.map((n) => label(`arch-${n}`));
  a.ldw(DATA.arch, 'which calling convention entered the kernel');
  top.forEach((n, i) => {
    const next = label('next-arch');
    a.jmp(BPF.JEQ, ARCHES[n].audit, secLabels[i]!, next, `AUDIT_ARCH_${n.toUpperCase()}?`);
    a.bind(next);
  });
  a.ret(badArch, 'an architecture the profile does not list');
  top.forEach((n, i) => {
    a.bind(secLabels[i]!);
    a.ldw(DATA.nr, `${n}: the system call number`);
    emitTree(a, section(n, n === 'x86_64' && withX32), ARCHES[n]);
  });
  const { prog, comments } = a.assemble();
  if (prog.length > 4096) throw new ProfileError('syscalls', `the filter has ${prog.length} instructions; the kernel accepts at most 4096 (BPF_MAXINSNS)`);
  if (unknown.size) warnings.push(`unknown system calls, skipped: ${[...unknown].sort().join(', ')}`);
  let flags = 0;
  for (const f of s.flags ?? []) flags |= FILTER_FLAGS[f] ?? 0;

  // The filter is loaded before the container's execve: a profile that denies it would
  // stop every container before its command, with a confusing error.
  const native = ARCHES[opts.native];
  const v = run(prog, { nr: native.table.execve!, arch: native.audit }).ret;
  if (!isAllowLike(v)) throw new ProfileError('syscalls', `the profile denies execve (${actionName(v)}): the container's command could never start`);
  return { prog, comments, bytes: encode(prog), flags, arches, warnings, notes, defaultAction: def };
}

/** The verdict for one call, by running the program. */
export function check(c: Compiled, arch: ArchName, name: string, args: bigint[] = []): { ret: number; steps: number; nr: number } {
  const info = ARCHES[arch];
  const nr = info.table[name];
  if (nr === undefined) throw new ProfileError('syscall', `no system call "${name}" on ${arch}`);
  const r = run(c.prog, { nr, arch: info.audit, args });
  return { ret: r.ret, steps: r.steps, nr };
}

/** Readable listing: a header, then one line per instruction. */
export function listing(c: Compiled, title: string): string {
  return [
    `; ${title}`,
    `; ${c.prog.length} instructions (${c.bytes.length} bytes), arches ${c.arches.join(', ')}, default ${actionName(c.defaultAction)}`,
    ...c.warnings.map((w) => `; warning: ${w}`),
    ...c.notes.map((w) => `; note: ${w}`),
    ...disassemble(c.prog, c.comments),
  ].join('\n');
}

/** Mean and max instructions executed per allowed call (arguments zero), for `bench`. */
export function pathStats(prog: readonly Insn[], arch: ArchName): { allowed: number; mean: number; max: number; cacheable: number } {
  const info = ARCHES[arch];
  let n = 0;
  let sum = 0;
  let max = 0;
  let cacheable = 0;
  for (const nr of new Set(Object.values(info.table))) {
    const r = run(prog, { nr, arch: info.audit });
    if (r.ret !== RET.ALLOW) continue;
    n++;
    sum += r.steps;
    max = Math.max(max, r.steps);
    if (!r.readArgs) cacheable++;
  }
  return { allowed: n, mean: n ? sum / n : 0, max, cacheable };
}
