// Argument vectors that exercise every argument rule at its boundaries: for each rule naming
// a call, the compared value, its neighbours, the masks, all-ones, and (on 64-bit ABIs) the
// same with high bits set, so that a program comparing only half an argument, or off by
// one, gives a different verdict somewhere. Shared by the differential test (tsrun vs
// libseccomp) and the parity test (built-in profile vs Docker's).
import type { Seccomp } from '../../src/spec/types.js';

const M64 = (1n << 64n) - 1n;

/** Boundary argument vectors for the rules of every profile in `profiles` that name `name`. */
export function argVectors(profiles: readonly Seccomp[], name: string, wide: boolean): bigint[][] {
  const out: bigint[][] = [[0n, 0n, 0n, 0n, 0n, 0n]];
  for (const s of profiles)
    for (const r of s.syscalls ?? []) {
      if (!r.names.includes(name)) continue;
      const all = [0n, 0n, 0n, 0n, 0n, 0n];
      for (const a of r.args ?? []) {
        const v = BigInt(a.value);
        const two = BigInt(a.valueTwo ?? 0);
        const cands = new Set<bigint>([0n, v, v + 1n, v > 0n ? v - 1n : 0n, two, v & two, (v ^ M64) | two, M64, 0xffffffffn]);
        if (wide) for (const c of [...cands]) cands.add((c + (1n << 32n)) & M64).add(c | (0xdeadn << 40n));
        for (const c of cands) {
          const vec = [0n, 0n, 0n, 0n, 0n, 0n];
          vec[a.index] = c & M64;
          out.push(vec);
        }
        all[a.index] = a.op === 'SCMP_CMP_MASKED_EQ' ? two : v;
      }
      out.push(all);
    }
  return out;
}
