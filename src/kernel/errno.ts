import { constants } from 'node:os';

// Node already carries the platform's errno table (os.constants.errno); invert it so
// every message can print the errno by name, as the man pages do.
const byNumber = new Map<number, string>();
for (const [name, num] of Object.entries(constants.errno)) {
  // Linux aliases (EWOULDBLOCK = EAGAIN, EDEADLOCK = EDEADLK): keep the first, canonical name.
  if (!byNumber.has(num)) byNumber.set(num, name);
}

export function errnoName(errno: number): string {
  return byNumber.get(errno) ?? `errno ${errno}`;
}

export function errnoNumber(name: string): number | undefined {
  return (constants.errno as Record<string, number>)[name];
}

/** Node's own fs errors carry `code` ("ENOENT") and `errno` (negative); normalise. */
export function errnoOf(e: unknown): { name: string; errno: number } | undefined {
  if (typeof e !== 'object' || e === null) return undefined;
  const x = e as { code?: unknown; errno?: unknown };
  if (typeof x.code === 'string' && /^E[A-Z0-9]+$/.test(x.code)) {
    return { name: x.code, errno: errnoNumber(x.code) ?? 0 };
  }
  if (typeof x.errno === 'number') {
    const n = Math.abs(x.errno);
    return { name: errnoName(n), errno: n };
  }
  return undefined;
}

/** "ENOENT (no such file or directory)" from a Node fs error, for one-line messages. */
export function describeError(e: unknown): string {
  const en = errnoOf(e);
  if (!en) return String((e as Error)?.message ?? e);
  const m = /^E[A-Z0-9]+: ([^,]+)/.exec((e as Error).message ?? '');
  return m ? `${en.name} (${m[1]})` : en.name;
}
