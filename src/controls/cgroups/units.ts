// Value parsers for the docker-style resource flags. Each throws a plain Error with the
// reason; flags.ts wraps it into a UsageError that names the flag.

const BYTE_UNITS: Record<string, number> = { '': 1, b: 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4, p: 1024 ** 5 };

/**
 * A size as docker reads `--memory` ("32m", "1.5g", "512k", "1073741824", "64MiB"): binary
 * multiples of 1024, case-insensitive unit, optional trailing "b"/"ib". No sign is accepted.
 */
export function parseBytes(text: string): number {
  const m = /^(\d+(?:\.\d+)?) ?([bkmgtp]?)(i?b)?$/i.exec(text.trim());
  if (!m || (m[2] === '' && m[3] && m[3].toLowerCase() === 'ib')) throw new Error(`invalid size "${text}" (use a number with an optional unit b, k, m, g)`);
  const n = Number(m[1]);
  const unit = (m[2] ?? '').toLowerCase();
  const bytes = Math.floor(n * (BYTE_UNITS[unit] ?? 1));
  if (!Number.isSafeInteger(bytes)) throw new Error(`size "${text}" is too large`);
  return bytes;
}

/** A whole number, optionally signed; rejects "1.5", "1e3", "", "0x10". */
export function parseInteger(text: string): number {
  if (!/^[-+]?\d+$/.test(text.trim())) throw new Error(`invalid integer "${text}"`);
  const n = Number(text);
  if (!Number.isSafeInteger(n)) throw new Error(`integer "${text}" is out of range`);
  return n;
}

/** A decimal number of CPUs ("0.5", "2"); returned in nano-CPUs, as docker's NanoCPUs. */
export function parseNanoCpus(text: string): number {
  if (!/^[-+]?(\d+(\.\d*)?|\.\d+)$/.test(text.trim())) throw new Error(`invalid number of CPUs "${text}"`);
  const [intPart, frac = ''] = text.trim().replace(/^\+/, '').split('.');
  const negative = intPart!.startsWith('-');
  const whole = Math.abs(Number(intPart || '0'));
  // Docker truncates beyond nanosecond precision; so do we.
  const nanos = whole * 1e9 + Number((frac + '000000000').slice(0, 9));
  return negative ? -nanos : nanos;
}

/**
 * A cpuset list as cpuset(7) writes it: "0-3,7", "1". Returns the sorted members.
 * Rejects empty members, reversed ranges and anything that is not a number.
 */
export function parseCpuList(text: string): number[] {
  const out = new Set<number>();
  if (!text.trim()) throw new Error('empty list');
  for (const part of text.trim().split(',')) {
    const m = /^(\d+)(?:-(\d+))?$/.exec(part.trim());
    if (!m) throw new Error(`invalid list member "${part}" (expected N or N-M)`);
    const a = Number(m[1]);
    const b = m[2] !== undefined ? Number(m[2]) : a;
    if (b < a) throw new Error(`invalid range "${part}" (end before start)`);
    if (b - a > 65536) throw new Error(`range "${part}" is too large`);
    for (let i = a; i <= b; i++) out.add(i);
  }
  return [...out].sort((x, y) => x - y);
}

/** Formats members back into the kernel's compact form ("0-2,5"). */
export function formatCpuList(members: number[]): string {
  const parts: string[] = [];
  let i = 0;
  while (i < members.length) {
    let j = i;
    while (j + 1 < members.length && members[j + 1] === members[j]! + 1) j++;
    parts.push(j === i ? `${members[i]}` : `${members[i]}-${members[j]}`);
    i = j + 1;
  }
  return parts.join(',');
}
