// The architectures tsrun compiles filters for. seccomp_data.arch holds the AUDIT_ARCH_*
// value of the calling convention (linux/audit.h): a process can enter the kernel through
// another ABI than the native one (int 0x80 for i386 on x86_64, x32 numbers with bit 30),
// and each ABI numbers the calls differently, so a filter must check the arch before
// trusting nr.
import { AARCH64, I386, X32, X32_BIT, X86_64 } from './syscalls.generated.js';

export type ArchName = 'x86_64' | 'x32' | 'x86' | 'aarch64';

export interface ArchInfo {
  name: ArchName;
  /** the OCI / libseccomp name */
  scmp: string;
  /** AUDIT_ARCH_*: EM_* | __AUDIT_ARCH_64BIT (0x80000000) | __AUDIT_ARCH_LE (0x40000000) */
  audit: number;
  /** GOARCH name docker profiles use in includes/excludes.arches */
  goarch: string;
  /**
   * Width of an argument register in the ABI: 32-bit ABIs (x86, and x32, whose longs are
   * 32 bits) have only the low half compared, as libseccomp does.
   */
  argBits: 32 | 64;
  table: Readonly<Record<string, number>>;
}

export const AUDIT_ARCH_X86_64 = 0xc000003e; // EM_X86_64 = 62
export const AUDIT_ARCH_AARCH64 = 0xc00000b7; // EM_AARCH64 = 183
export const AUDIT_ARCH_I386 = 0x40000003; // EM_386 = 3

export const ARCHES: Record<ArchName, ArchInfo> = {
  x86_64: { name: 'x86_64', scmp: 'SCMP_ARCH_X86_64', audit: AUDIT_ARCH_X86_64, goarch: 'amd64', argBits: 64, table: X86_64 },
  x32: { name: 'x32', scmp: 'SCMP_ARCH_X32', audit: AUDIT_ARCH_X86_64, goarch: 'x32', argBits: 32, table: X32 },
  // i386 programs (int 0x80) on an x86_64 kernel: arguments arrive zero-extended to 64 bits
  x86: { name: 'x86', scmp: 'SCMP_ARCH_X86', audit: AUDIT_ARCH_I386, goarch: '386', argBits: 32, table: I386 },
  aarch64: { name: 'aarch64', scmp: 'SCMP_ARCH_AARCH64', audit: AUDIT_ARCH_AARCH64, goarch: 'arm64', argBits: 64, table: AARCH64 },
};
export { X32_BIT };

/** Names libseccomp knows for arches tsrun does not compile (profiles list them). */
export const OTHER_SCMP_ARCHES = new Set([
  'SCMP_ARCH_ARM', 'SCMP_ARCH_MIPS', 'SCMP_ARCH_MIPS64', 'SCMP_ARCH_MIPS64N32', 'SCMP_ARCH_MIPSEL', 'SCMP_ARCH_MIPSEL64',
  'SCMP_ARCH_MIPSEL64N32', 'SCMP_ARCH_PPC', 'SCMP_ARCH_PPC64', 'SCMP_ARCH_PPC64LE', 'SCMP_ARCH_S390', 'SCMP_ARCH_S390X', 'SCMP_ARCH_PARISC',
  'SCMP_ARCH_PARISC64', 'SCMP_ARCH_RISCV64', 'SCMP_ARCH_LOONGARCH64', 'SCMP_ARCH_M68K', 'SCMP_ARCH_SH', 'SCMP_ARCH_SHEB',
]);

export function archByScmp(scmp: string): ArchInfo | undefined {
  return Object.values(ARCHES).find((a) => a.scmp === scmp);
}

/** The native (filter) arch of this Node process. */
export function hostArch(): 'x86_64' | 'aarch64' {
  if (process.arch === 'x64') return 'x86_64';
  if (process.arch === 'arm64') return 'aarch64';
  throw new Error(`seccomp: no syscall table for ${process.arch}`);
}

let known: Set<string> | undefined;
/** Whether some table knows the name (i386 included): if none does, it is a typo or newer than our headers. */
export function isKnownName(name: string): boolean {
  known ??= new Set([...Object.keys(X86_64), ...Object.keys(X32), ...Object.keys(AARCH64), ...Object.keys(I386)]);
  return known.has(name);
}

const byNumber = new Map<ArchName, Map<number, string>>();
/** number → name of one arch (the first name for aliases), built once */
export function namesByNumber(arch: ArchInfo): Map<number, string> {
  let m = byNumber.get(arch.name);
  if (!m) {
    m = new Map();
    for (const [n, v] of Object.entries(arch.table)) if (!m.has(v)) m.set(v, n);
    byNumber.set(arch.name, m);
  }
  return m;
}
