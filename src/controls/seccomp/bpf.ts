// Classic BPF as seccomp uses it (linux/filter.h, linux/bpf_common.h, Documentation/
// userspace-api/seccomp_filter.rst): each instruction is a struct sock_filter
// { u16 code; u8 jt; u8 jf; u32 k } (8 bytes, host byte order: little-endian on x86_64 and
// aarch64). A filter reads only `struct seccomp_data` { int nr; u32 arch; u64
// instruction_pointer; u64 args[6] } and returns a 32-bit action.
// This module holds the encoding, an assembler that resolves forward labels (inserting
// `ja` trampolines where a conditional jump's 8-bit offset cannot reach), an interpreter
// that counts executed instructions, and a disassembler.

export const BPF = {
  LD: 0x00,
  LDX: 0x01,
  ST: 0x02,
  STX: 0x03,
  ALU: 0x04,
  JMP: 0x05,
  RET: 0x06,
  MISC: 0x07,
  W: 0x00,
  H: 0x08,
  B: 0x10,
  IMM: 0x00,
  ABS: 0x20,
  IND: 0x40,
  MEM: 0x60,
  LEN: 0x80,
  MSH: 0xa0,
  ADD: 0x00,
  SUB: 0x10,
  MUL: 0x20,
  DIV: 0x30,
  OR: 0x40,
  AND: 0x50,
  LSH: 0x60,
  RSH: 0x70,
  NEG: 0x80,
  MOD: 0x90,
  XOR: 0xa0,
  JA: 0x00,
  JEQ: 0x10,
  JGT: 0x20,
  JGE: 0x30,
  JSET: 0x40,
  K: 0x00,
  X: 0x08,
  A: 0x10,
  TAX: 0x00,
  TXA: 0x80,
} as const;

/** seccomp return values (linux/seccomp.h); the low 16 bits carry data (errno). */
export const RET = {
  KILL_PROCESS: 0x80000000,
  KILL_THREAD: 0x00000000,
  TRAP: 0x00030000,
  ERRNO: 0x00050000,
  USER_NOTIF: 0x7fc00000,
  TRACE: 0x7ff00000,
  LOG: 0x7ffc0000,
  ALLOW: 0x7fff0000,
} as const;
export const RET_ACTION_FULL = 0xffff0000;
export const RET_DATA = 0x0000ffff;

/** offsets in struct seccomp_data */
export const DATA = { nr: 0, arch: 4, ip: 8, args: 16, size: 64 } as const;

/** One instruction, as the kernel takes it. */
export interface Insn {
  code: number;
  jt: number;
  jf: number;
  k: number;
}

/** Writes struct sock_filter[] (little-endian). */
export function encode(prog: readonly Insn[]): Uint8Array {
  const out = new Uint8Array(prog.length * 8);
  const v = new DataView(out.buffer);
  prog.forEach((i, n) => {
    v.setUint16(n * 8, i.code, true);
    v.setUint8(n * 8 + 2, i.jt);
    v.setUint8(n * 8 + 3, i.jf);
    v.setUint32(n * 8 + 4, i.k >>> 0, true);
  });
  return out;
}

export function decode(bytes: Uint8Array): Insn[] {
  if (bytes.length % 8) throw new Error(`a BPF program is a multiple of 8 bytes, got ${bytes.length}`);
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out: Insn[] = [];
  for (let o = 0; o < bytes.length; o += 8) out.push({ code: v.getUint16(o, true), jt: v.getUint8(o + 2), jf: v.getUint8(o + 3), k: v.getUint32(o + 4, true) });
  return out;
}

// ---------------------------------------------------------------------------------------
// Assembler: code is emitted with symbolic forward jumps, then laid out.

export type Label = { readonly id: number; readonly name: string };
let nextLabel = 0;
export function label(name = 'L'): Label {
  return { id: nextLabel++, name };
}

export interface AsmInsn {
  code: number;
  k: number;
  /** conditional jumps: targets; `ja`: jt is the target */
  jt?: Label;
  jf?: Label;
  /** labels that mark this instruction */
  labels?: Label[];
  comment?: string;
}

export class Assembler {
  readonly insns: AsmInsn[] = [];
  private pending: Label[] = [];

  /** marks the next emitted instruction */
  bind(l: Label): void {
    this.pending.push(l);
  }
  emit(code: number, k: number, jt?: Label, jf?: Label, comment?: string): void {
    const i: AsmInsn = { code, k: k >>> 0 };
    if (jt) i.jt = jt;
    if (jf) i.jf = jf;
    if (comment) i.comment = comment;
    if (this.pending.length) {
      i.labels = this.pending;
      this.pending = [];
    }
    this.insns.push(i);
  }
  ldw(off: number, comment?: string): void {
    this.emit(BPF.LD | BPF.W | BPF.ABS, off, undefined, undefined, comment);
  }
  jmp(op: number, k: number, jt: Label, jf: Label, comment?: string): void {
    this.emit(BPF.JMP | op | BPF.K, k, jt, jf, comment);
  }
  ja(target: Label, comment?: string): void {
    this.emit(BPF.JMP | BPF.JA, 0, target, undefined, comment);
  }
  and(k: number, comment?: string): void {
    this.emit(BPF.ALU | BPF.AND | BPF.K, k, undefined, undefined, comment);
  }
  ret(k: number, comment?: string): void {
    this.emit(BPF.RET | BPF.K, k, undefined, undefined, comment);
  }

  /**
   * Lays the code out. Every jump must go forward (the kernel rejects backward jumps).
   * A conditional jump reaches at most 255 instructions ahead; a farther target gets a
   * `ja` trampoline (32-bit offset) right after the jump.
   */
  assemble(): { prog: Insn[]; comments: (string | undefined)[] } {
    const list = this.insns.map((i) => ({ ...i }));
    for (;;) {
      const pos = new Map<number, number>();
      list.forEach((i, n) => i.labels?.forEach((l) => pos.set(l.id, n)));
      const at = (l: Label, from: number): number => {
        const p = pos.get(l.id);
        if (p === undefined) throw new Error(`BPF label ${l.name} never bound`);
        const d = p - from - 1;
        if (d < 0) throw new Error(`BPF jump backwards to ${l.name}`);
        return d;
      };
      let changed = false;
      for (let n = 0; n < list.length && !changed; n++) {
        const i = list[n]!;
        if ((i.code & 0x07) !== BPF.JMP || (i.code & 0xf0) === BPF.JA) continue;
        const farT = at(i.jt!, n) > 255;
        const farF = at(i.jf!, n) > 255;
        if (!farT && !farF) continue;
        const add: AsmInsn[] = [];
        if (farT) {
          const t = label('trampoline');
          add.push({ code: BPF.JMP | BPF.JA, k: 0, jt: i.jt!, labels: [t], comment: 'trampoline: a conditional jump reaches 255 ahead' });
          i.jt = t;
        }
        if (farF) {
          const f = label('trampoline');
          add.push({ code: BPF.JMP | BPF.JA, k: 0, jt: i.jf!, labels: [f], comment: 'trampoline: a conditional jump reaches 255 ahead' });
          i.jf = f;
        }
        list.splice(n + 1, 0, ...add);
        changed = true;
      }
      if (changed) continue;
      const prog = list.map((i, n): Insn => {
        if ((i.code & 0x07) !== BPF.JMP) return { code: i.code, jt: 0, jf: 0, k: i.k };
        if ((i.code & 0xf0) === BPF.JA) return { code: i.code, jt: 0, jf: 0, k: at(i.jt!, n) };
        return { code: i.code, jt: at(i.jt!, n), jf: at(i.jf!, n), k: i.k };
      });
      return { prog, comments: list.map((i) => i.comment) };
    }
  }
}

// ---------------------------------------------------------------------------------------
// Interpreter (the kernel's sk_run_filter semantics for the subset seccomp accepts).

export interface SeccompData {
  nr: number;
  arch: number;
  ip?: bigint;
  args?: readonly bigint[];
}

export interface RunResult {
  /** the 32-bit value the filter returned */
  ret: number;
  /** instructions executed, the return included */
  steps: number;
  /** whether the path read anything but nr and arch (the kernel cannot cache it then) */
  readArgs: boolean;
}

function dataWord(d: SeccompData, off: number): number {
  if (off === DATA.nr) return d.nr >>> 0;
  if (off === DATA.arch) return d.arch >>> 0;
  if (off % 4 || off < 0 || off >= DATA.size) throw new Error(`BPF load at offset ${off}: outside struct seccomp_data`);
  const idx = (off - 8) >> 3;
  const v = idx === 0 ? (d.ip ?? 0n) : (d.args?.[idx - 1] ?? 0n);
  const hi = (off - 8) & 4;
  return Number(BigInt.asUintN(32, hi ? BigInt.asUintN(64, v) >> 32n : v));
}

export function run(prog: readonly Insn[], d: SeccompData): RunResult {
  let A = 0;
  let X = 0;
  const M = new Array<number>(16).fill(0);
  let pc = 0;
  let steps = 0;
  let readArgs = false;
  while (pc < prog.length) {
    const i = prog[pc++]!;
    steps++;
    const cls = i.code & 0x07;
    switch (cls) {
      case BPF.LD:
      case BPF.LDX: {
        const mode = i.code & 0xe0;
        let v: number;
        if (mode === BPF.ABS) {
          if ((i.code & 0x18) !== BPF.W) throw new Error(`pc ${pc - 1}: seccomp allows only 32-bit loads`);
          if (i.k !== DATA.nr && i.k !== DATA.arch) readArgs = true;
          v = dataWord(d, i.k);
        } else if (mode === BPF.IMM) v = i.k >>> 0;
        else if (mode === BPF.MEM) v = M[i.k & 15]!;
        else if (mode === BPF.LEN) v = DATA.size;
        else throw new Error(`pc ${pc - 1}: load mode 0x${mode.toString(16)} not allowed in seccomp`);
        if (cls === BPF.LD) A = v;
        else X = v;
        break;
      }
      case BPF.ST:
        M[i.k & 15] = A;
        break;
      case BPF.STX:
        M[i.k & 15] = X;
        break;
      case BPF.ALU: {
        const src = i.code & BPF.X ? X : i.k >>> 0;
        switch (i.code & 0xf0) {
          case BPF.ADD: A = (A + src) >>> 0; break;
          case BPF.SUB: A = (A - src) >>> 0; break;
          case BPF.MUL: A = Math.imul(A, src) >>> 0; break;
          case BPF.DIV: if (src === 0) return { ret: 0, steps, readArgs }; A = Math.floor(A / src) >>> 0; break;
          case BPF.MOD: if (src === 0) return { ret: 0, steps, readArgs }; A = (A % src) >>> 0; break;
          case BPF.OR: A = (A | src) >>> 0; break;
          case BPF.AND: A = (A & src) >>> 0; break;
          case BPF.XOR: A = (A ^ src) >>> 0; break;
          case BPF.LSH: A = src >= 32 ? 0 : (A << src) >>> 0; break;
          case BPF.RSH: A = src >= 32 ? 0 : A >>> src; break;
          case BPF.NEG: A = -A >>> 0; break;
          default: throw new Error(`pc ${pc - 1}: unknown ALU op`);
        }
        break;
      }
      case BPF.JMP: {
        const op = i.code & 0xf0;
        if (op === BPF.JA) {
          pc += i.k;
          break;
        }
        const src = i.code & BPF.X ? X : i.k >>> 0;
        let c: boolean;
        if (op === BPF.JEQ) c = A === src;
        else if (op === BPF.JGT) c = A > src;
        else if (op === BPF.JGE) c = A >= src;
        else if (op === BPF.JSET) c = (A & src) !== 0;
        else throw new Error(`pc ${pc - 1}: unknown jump`);
        pc += c ? i.jt : i.jf;
        break;
      }
      case BPF.RET:
        return { ret: ((i.code & 0x18) === BPF.A ? A : i.k) >>> 0, steps, readArgs };
      case BPF.MISC:
        if ((i.code & 0xf8) === BPF.TXA) A = X;
        else X = A;
        break;
    }
  }
  throw new Error('BPF program ran off its end without a return');
}

// ---------------------------------------------------------------------------------------
// Names and disassembly.

const ERRNO_NAMES: Record<number, string> = {
  1: 'EPERM', 2: 'ENOENT', 3: 'ESRCH', 4: 'EINTR', 5: 'EIO', 9: 'EBADF', 11: 'EAGAIN', 12: 'ENOMEM', 13: 'EACCES', 14: 'EFAULT',
  16: 'EBUSY', 17: 'EEXIST', 19: 'ENODEV', 22: 'EINVAL', 28: 'ENOSPC', 30: 'EROFS', 38: 'ENOSYS', 95: 'EOPNOTSUPP', 97: 'EAFNOSUPPORT',
};
export function errnoName(n: number): string {
  return ERRNO_NAMES[n] ?? `errno ${n}`;
}

/** `ALLOW`, `ERRNO(EPERM)`, `KILL_PROCESS`... for a seccomp return value. */
export function actionName(ret: number): string {
  const a = (ret & RET_ACTION_FULL) >>> 0;
  const data = ret & RET_DATA;
  switch (a) {
    case RET.KILL_PROCESS: return 'KILL_PROCESS';
    case RET.KILL_THREAD: return 'KILL_THREAD';
    case RET.TRAP: return data ? `TRAP(${data})` : 'TRAP';
    case RET.ERRNO: return `ERRNO(${errnoName(data)})`;
    case RET.USER_NOTIF: return 'NOTIFY';
    case RET.TRACE: return `TRACE(${data})`;
    case RET.LOG: return 'LOG';
    case RET.ALLOW: return 'ALLOW';
    default: return `0x${(ret >>> 0).toString(16)}`;
  }
}

function hex(n: number): string {
  return `0x${(n >>> 0).toString(16)}`;
}

function fieldName(off: number): string {
  if (off === DATA.nr) return 'nr';
  if (off === DATA.arch) return 'arch';
  if (off === 8) return 'ip (low)';
  if (off === 12) return 'ip (high)';
  const a = (off - 16) >> 3;
  return `args[${a}] (${(off - 16) & 4 ? 'high' : 'low'} 32 bits)`;
}

/** One line per instruction: index, mnemonic, operands, `; comment`. */
export function disassemble(prog: readonly Insn[], comments: readonly (string | undefined)[] = []): string[] {
  const w = String(prog.length).length;
  return prog.map((i, n) => {
    const cls = i.code & 0x07;
    let text: string;
    const target = (d: number) => String(n + 1 + d);
    if (cls === BPF.LD && (i.code & 0xe0) === BPF.ABS) text = `ld   [${i.k}]`.padEnd(22) + `  ${fieldName(i.k)}`;
    else if (cls === BPF.LD && (i.code & 0xe0) === BPF.IMM) text = `ld   #${hex(i.k)}`;
    else if (cls === BPF.LD && (i.code & 0xe0) === BPF.MEM) text = `ld   M[${i.k}]`;
    else if (cls === BPF.LDX) text = `ldx  ${(i.code & 0xe0) === BPF.MEM ? `M[${i.k}]` : `#${hex(i.k)}`}`;
    else if (cls === BPF.ST) text = `st   M[${i.k}]`;
    else if (cls === BPF.STX) text = `stx  M[${i.k}]`;
    else if (cls === BPF.ALU) {
      const ops: Record<number, string> = { 0x00: 'add', 0x10: 'sub', 0x20: 'mul', 0x30: 'div', 0x40: 'or', 0x50: 'and', 0x60: 'lsh', 0x70: 'rsh', 0x80: 'neg', 0x90: 'mod', 0xa0: 'xor' };
      text = `${(ops[i.code & 0xf0] ?? 'alu?').padEnd(4)} ${i.code & BPF.X ? 'x' : `#${hex(i.k)}`}`;
    } else if (cls === BPF.JMP) {
      const op = i.code & 0xf0;
      if (op === BPF.JA) text = `ja   ${target(i.k)}`;
      else {
        const name = ({ 0x10: 'jeq', 0x20: 'jgt', 0x30: 'jge', 0x40: 'jset' } as Record<number, string>)[op] ?? 'j?';
        text = `${name.padEnd(4)} ${i.code & BPF.X ? 'x' : `#${i.k > 0xffff ? hex(i.k) : i.k}`}, ${target(i.jt)}, ${target(i.jf)}`;
      }
    } else if (cls === BPF.RET) text = (i.code & 0x18) === BPF.A ? 'ret  a' : `ret  #${hex(i.k)}`.padEnd(22) + `  ${actionName(i.k)}`;
    else text = (i.code & 0xf8) === BPF.TXA ? 'txa' : 'tax';
    const c = comments[n];
    return `${String(n).padStart(w)}: ${text}${c ? `${text.length < 40 ? ' '.repeat(40 - text.length) : ' '} ; ${c}` : ''}`;
  });
}
