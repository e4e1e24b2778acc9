import { OP, PLAN_MAGIC, PLAN_VERSION } from './protocol.js';
import type { ChildOp } from './types.js';

// Binary layout: native/protocol.h (plan_header, op_header). Little-endian, every op
// padded to 8 bytes so the init can read its u64 arguments in place.

const pad8 = (n: number) => (n + 7) & ~7;

// Limits of the op format (native/protocol.h), not of what a container may ask for: a
// command line goes in EXEC's blob, and the spec's validation refuses, naming the field,
// what could overflow the rest (e.g. more groups than NGROUPS_MAX).
function check(o: ChildOp): void {
  if (o.strs.length > 64) throw new RangeError(`${o.op}: at most 64 strings per operation (got ${o.strs.length})`);
  if (o.ints.length > 0xffff) throw new RangeError(`${o.op}: at most 65535 integers per operation (got ${o.ints.length})`);
  for (const s of o.strs) if (s.includes('\0')) throw new RangeError(`${o.op}: string contains a NUL byte: ${JSON.stringify(s)}`);
}

function opSize(o: ChildOp): number {
  let strs = 0;
  for (const s of o.strs) strs += Buffer.byteLength(s, 'utf8') + 1;
  return pad8(16 + o.ints.length * 8 + pad8(o.blob?.length ?? 0) + strs);
}

// One zeroed buffer for the whole plan, written in place: it is built on every container
// start, and a buffer per string and per op cost more than the rest of the encoding.
export function encodePlan(ops: readonly ChildOp[]): Buffer {
  let size = 16;
  for (const o of ops) {
    check(o);
    size += opSize(o);
  }
  const buf = Buffer.alloc(size);
  buf.writeUInt32LE(PLAN_MAGIC, 0);
  buf.writeUInt32LE(PLAN_VERSION, 4);
  buf.writeUInt32LE(ops.length, 8);
  buf.writeUInt32LE(size, 12);
  let at = 16;
  for (const o of ops) {
    const n = opSize(o);
    const blob = o.blob ?? new Uint8Array(0);
    buf.writeUInt32LE(OP[o.op], at);
    buf.writeUInt32LE(n, at + 4);
    buf.writeUInt16LE(o.ints.length, at + 8);
    buf.writeUInt16LE(o.strs.length, at + 10);
    buf.writeUInt32LE(blob.length, at + 12);
    let off = at + 16;
    for (const v of o.ints) {
      buf.writeBigUInt64LE(BigInt.asUintN(64, v), off);
      off += 8;
    }
    buf.set(blob, off);
    off += pad8(blob.length);
    for (const s of o.strs) off += buf.write(s, off, 'utf8') + 1; // the NUL is the zero fill
    at += n;
  }
  return buf;
}
