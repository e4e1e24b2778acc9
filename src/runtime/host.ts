import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { zlib } from '../builtins.js';
import type { HostInfo } from '../plan/types.js';

function read(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}

/** Kernel config symbol of each LSM that CONFIG_LSM may list. */
const LSM_SYMBOL: Record<string, string> = {
  capability: '',
  landlock: 'CONFIG_SECURITY_LANDLOCK',
  lockdown: 'CONFIG_SECURITY_LOCKDOWN_LSM',
  yama: 'CONFIG_SECURITY_YAMA',
  loadpin: 'CONFIG_SECURITY_LOADPIN',
  safesetid: 'CONFIG_SECURITY_SAFESETID',
  integrity: 'CONFIG_INTEGRITY',
  selinux: 'CONFIG_SECURITY_SELINUX',
  smack: 'CONFIG_SECURITY_SMACK',
  tomoyo: 'CONFIG_SECURITY_TOMOYO',
  apparmor: 'CONFIG_SECURITY_APPARMOR',
  bpf: 'CONFIG_BPF_LSM',
  ipe: 'CONFIG_SECURITY_IPE',
};

export interface LsmList {
  lsms: string[];
  /** where the list came from, for messages: the file, the command line, or the build config */
  source: string;
}

/**
 * The active Linux security modules. /sys/kernel/security/lsm says it exactly, but only when
 * securityfs is mounted (it is not on every machine, this one included). Otherwise: an
 * explicit `lsm=` on the kernel command line, else the build's CONFIG_LSM order restricted
 * to the modules built in (what the kernel enables when the command line does not choose;
 * "capability" is always first).
 */
export function readLsms(files: { lsm?: string; cmdline?: string; config?: () => string } = {}): LsmList {
  const sec = files.lsm ?? read('/sys/kernel/security/lsm');
  if (sec.trim()) return { lsms: sec.trim().split(',').filter(Boolean), source: '/sys/kernel/security/lsm' };
  const cmd = /(?:^|\s)lsm=(\S+)/.exec(files.cmdline ?? read('/proc/cmdline'));
  if (cmd) {
    const l = cmd[1]!.split(',').filter(Boolean);
    return { lsms: l.includes('capability') ? l : ['capability', ...l], source: 'the kernel command line (lsm=), as securityfs is not mounted at /sys/kernel/security' };
  }
  const cfg = (files.config ?? kernelConfig)();
  const order = /^CONFIG_LSM="([^"]*)"/m.exec(cfg)?.[1];
  if (order !== undefined) {
    const built = order.split(',').filter((n) => {
      const sym = LSM_SYMBOL[n];
      return sym !== undefined && (sym === '' || new RegExp(`^${sym}=y$`, 'm').test(cfg));
    });
    return { lsms: ['capability', ...built.filter((n) => n !== 'capability')], source: "the kernel's build config (CONFIG_LSM and the built-in modules), as securityfs is not mounted at /sys/kernel/security" };
  }
  return { lsms: [], source: 'unknown: securityfs is not mounted (mount -t securityfs securityfs /sys/kernel/security) and the kernel config is not readable' };
}

function kernelConfig(): string {
  try {
    return zlib().gunzipSync(readFileSync('/proc/config.gz')).toString('utf8');
  } catch {
    /* no CONFIG_IKCONFIG_PROC: the distribution's copy */
  }
  const release = read('/proc/sys/kernel/osrelease').trim();
  return release ? read(`/boot/config-${release}`) : '';
}

let lsmCache: LsmList | undefined;

/** Facts about this host that planning depends on, read from /proc and /sys. */
export function detectHost(): HostInfo {
  const status = read('/proc/self/status');
  const cap = /^CapEff:\s*([0-9a-f]+)$/m.exec(status)?.[1];
  const bnd = /^CapBnd:\s*([0-9a-f]+)$/m.exec(status)?.[1];
  lsmCache ??= readLsms();
  return {
    capEff: cap ? BigInt(`0x${cap}`) : 0n,
    ...(bnd ? { capBnd: BigInt(`0x${bnd}`) } : {}),
    lsms: lsmCache.lsms,
    lsmSource: lsmCache.source,
    ncpu: availableParallelism(),
  };
}
