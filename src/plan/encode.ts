import { OP, PLAN_MAGIC, PLAN_VERSION } from './protocol.js';
import type { ChildOp } from './types.js';

// Binary layout: native/protocol.h (plan_header, op_header). Little-endian, every op
// padded to 8 bytes so the init can read its u64 arguments in place.

const pad8 = (n: number) => (n + 7) & ~7;

function encodeOp(o: ChildOp): Buffer {
  if (o.strs.length > 64) throw new RangeError(`${o.op}: at most 64 strings per operation (got ${o.strs.length})`);
  const strs = o.strs.map((s) => {
    if (s.includes('\0')) throw new RangeError(`${o.op}: string contains a NUL byte: ${JSON.stringify(s)}`);
    return Buffer.from(s + '\0', 'utf8');
  });
  const blob = o.blob ?? new Uint8Array(0);
  const size = pad8(16 + o.ints.length * 8 + pad8(blob.length) + strs.reduce((a, b) => a + b.length, 0));
  const buf = Buffer.alloc(size);
  buf.writeUInt32LE(OP[o.op], 0);
  buf.writeUInt32LE(size, 4);
  buf.writeUInt16LE(o.ints.length, 8);
  buf.writeUInt16LE(o.strs.length, 10);
  buf.writeUInt32LE(blob.length, 12);
  let off = 16;
  for (const v of o.ints) {
    buf.writeBigUInt64LE(BigInt.asUintN(64, v), off);
    off += 8;
  }
  buf.set(blob, off);
  off += pad8(blob.length);
  for (const s of strs) {
    s.copy(buf, off);
    off += s.length;
  }
  return buf;
}

export function encodePlan(ops: readonly ChildOp[]): Buffer {
  const parts = ops.map(encodeOp);
  const size = 16 + parts.reduce((a, b) => a + b.length, 0);
  const head = Buffer.alloc(16);
  head.writeUInt32LE(PLAN_MAGIC, 0);
  head.writeUInt32LE(PLAN_VERSION, 4);
  head.writeUInt32LE(ops.length, 8);
  head.writeUInt32LE(size, 12);
  return Buffer.concat([head, ...parts], size);
}
