import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import type { HostInfo } from '../plan/types.js';

function read(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}

/** Facts about this host that planning depends on, read from /proc and /sys. */
export function detectHost(): HostInfo {
  const status = read('/proc/self/status');
  const cap = /^CapEff:\s*([0-9a-f]+)$/m.exec(status)?.[1];
  const bnd = /^CapBnd:\s*([0-9a-f]+)$/m.exec(status)?.[1];
  return {
    capEff: cap ? BigInt(`0x${cap}`) : 0n,
    ...(bnd ? { capBnd: BigInt(`0x${bnd}`) } : {}),
    lsms: read('/sys/kernel/security/lsm').trim().split(',').filter(Boolean),
    ncpu: availableParallelism(),
  };
}
