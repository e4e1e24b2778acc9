// Landlock (landlock(7), Linux 5.13+): a stackable LSM that lets a process restrict its own
// file access, unprivileged, with rules on path hierarchies. Unlike AppArmor and SELinux it
// needs no policy loaded by the host's administrator and no file labels: the runtime builds
// the ruleset from the container's own paths, after pivot_root, and the domain is inherited
// by every process of the container and can never be removed (only narrowed further).
// No other runtime offers it; tsrun does because it is the MAC layer this host's kernel
// actually enforces (design.md: active LSMs are lockdown, capability, landlock, bpf).
//
// Input: `--security-opt landlock=FILE|builtin|unconfined`, FILE being JSON such as
//   {"read": ["/"], "write": ["/tmp"], "execute": ["/bin", "/usr/bin"]}
// with paths inside the container. The ruleset travels in the spec as the annotation
// `io.tsrun.landlock` (its canonical JSON), so `tsrun spec`, bundles and `tsrun exec` all see
// the same thing; OCI has no field for Landlock.
import { readFileSync } from 'node:fs';
import { posix } from 'node:path';
import type { BuildContext, Control, Step } from '../plan/types.js';
import type { Spec } from '../spec/types.js';
import { child } from '../plan/step.js';
import * as op from '../plan/ops.js';
import { SpecError, UnsupportedError, UsageError } from '../errors.js';

export const LANDLOCK_ANNOTATION = 'io.tsrun.landlock';

/** LANDLOCK_ACCESS_FS_* (<linux/landlock.h>), with the ABI that introduced each. */
export const FS = {
  EXECUTE: 1n << 0n,
  WRITE_FILE: 1n << 1n,
  READ_FILE: 1n << 2n,
  READ_DIR: 1n << 3n,
  REMOVE_DIR: 1n << 4n,
  REMOVE_FILE: 1n << 5n,
  MAKE_CHAR: 1n << 6n,
  MAKE_DIR: 1n << 7n,
  MAKE_REG: 1n << 8n,
  MAKE_SOCK: 1n << 9n,
  MAKE_FIFO: 1n << 10n,
  MAKE_BLOCK: 1n << 11n,
  MAKE_SYM: 1n << 12n,
  REFER: 1n << 13n, // ABI 2 (5.19)
  TRUNCATE: 1n << 14n, // ABI 3 (6.2)
  IOCTL_DEV: 1n << 15n, // ABI 5 (6.10)
} as const;
type FsRight = keyof typeof FS;

const mask = (names: FsRight[]): bigint => names.reduce((m, n) => m | FS[n], 0n);

/**
 * What each word of the profile grants. MAKE_CHAR and MAKE_BLOCK are handled but never
 * granted: device nodes are the device cgroup's business, and no profile word opens them.
 * IOCTL_DEV rides with write: an ioctl on a device is a write in all but name (the
 * container's own terminal was opened before the restriction, so it keeps working).
 * execute includes READ_FILE: execve(2) opens the program for reading as well, and Landlock
 * checks both rights on that open (an executable one cannot read cannot run).
 */
export const GROUPS = {
  read: mask(['READ_FILE', 'READ_DIR']),
  write: mask(['WRITE_FILE', 'TRUNCATE', 'REMOVE_DIR', 'REMOVE_FILE', 'MAKE_DIR', 'MAKE_REG', 'MAKE_SOCK', 'MAKE_FIFO', 'MAKE_SYM', 'REFER', 'IOCTL_DEV']),
  execute: mask(['EXECUTE', 'READ_FILE']),
} as const;
type Group = keyof typeof GROUPS;
const GROUP_NAMES = Object.keys(GROUPS) as Group[];

/** Every filesystem right tsrun knows; init masks it to the running kernel's ABI. */
export const HANDLED = (1n << 16n) - 1n;

export interface LandlockProfile {
  read: string[];
  write: string[];
  execute: string[];
  /** builtin profile: a listed path the image lacks is skipped, not an error */
  optional?: boolean;
}

/**
 * The built-in profile students can try (`--security-opt landlock=builtin`): the whole image
 * readable, writes only to scratch places, and programs run only from the image's system
 * directories — so a file dropped in /tmp cannot be executed and /etc, /usr cannot be changed,
 * even by root with every capability (Landlock is checked after DAC and capabilities).
 */
export const BUILTIN: LandlockProfile = {
  read: ['/'],
  write: ['/dev', '/run', '/tmp', '/var/tmp'],
  execute: ['/bin', '/lib', '/lib32', '/lib64', '/libx32', '/sbin', '/usr'],
  optional: true,
};

class ProfileProblem extends Error {}

/** Validates a profile object; the result is canonical (sorted, deduplicated, normalized). */
export function parseLandlockProfile(raw: unknown): LandlockProfile {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new ProfileProblem('expected a JSON object with "read", "write" and "execute" lists');
  const out: LandlockProfile = { read: [], write: [], execute: [] };
  for (const [k, v] of Object.entries(raw as Record<string, unknown>)) {
    if (k === 'optional') {
      if (typeof v !== 'boolean') throw new ProfileProblem('"optional" must be true or false');
      if (v) out.optional = true;
      continue;
    }
    if (!(GROUP_NAMES as string[]).includes(k)) throw new ProfileProblem(`unknown key ${JSON.stringify(k)} (expected read, write, execute, optional)`);
    if (!Array.isArray(v)) throw new ProfileProblem(`"${k}" must be a list of paths`);
    const set = new Set<string>();
    for (const p of v) {
      if (typeof p !== 'string' || !p.startsWith('/') || p.includes('\0')) throw new ProfileProblem(`"${k}": ${JSON.stringify(p)} is not an absolute path inside the container`);
      if (p.split('/').includes('..')) throw new ProfileProblem(`"${k}": ${JSON.stringify(p)} contains ".."`);
      set.add(posix.normalize(p).replace(/(.)\/$/, '$1'));
    }
    out[k as Group] = [...set].sort();
  }
  if (!GROUP_NAMES.some((g) => out[g].length)) throw new ProfileProblem('grants nothing: every file access would fail, exec of the command included');
  return out;
}

/** The rules as init adds them: one per path, the union of its groups. */
export function landlockRules(p: LandlockProfile): { path: string; access: bigint; groups: Group[] }[] {
  const by = new Map<string, Group[]>();
  for (const g of GROUP_NAMES) for (const path of p[g]) by.set(path, [...(by.get(path) ?? []), g]);
  return [...by.entries()]
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([path, groups]) => ({ path, groups, access: groups.reduce((m, g) => m | GROUPS[g], 0n) }));
}

function rightsText(access: bigint): string {
  return (Object.keys(FS) as FsRight[]).filter((n) => access & FS[n]).join('|');
}

/** The spec's Landlock profile (from its annotation), or undefined. Errors name the annotation. */
export function landlockOf(spec: Spec): LandlockProfile | undefined {
  const text = spec.annotations?.[LANDLOCK_ANNOTATION];
  if (text === undefined) return undefined;
  const field = `annotations[${JSON.stringify(LANDLOCK_ANNOTATION)}]`;
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new SpecError(field, `not JSON: ${(e as Error).message}`, { cause: e });
  }
  try {
    return parseLandlockProfile(raw);
  } catch (e) {
    if (e instanceof ProfileProblem) throw new SpecError(field, e.message, { cause: e });
    throw e;
  }
}

/** `--security-opt landlock=FILE|builtin|unconfined`; false for other forms. */
export function applyLandlockSecurityOpt(spec: Spec, opt: string): boolean {
  const m = /^landlock[=:](.*)$/s.exec(opt.trim());
  if (!m) {
    if (opt.trim() === 'landlock') throw new UsageError('--security-opt landlock: expected landlock=FILE.json, landlock=builtin or landlock=unconfined');
    return false;
  }
  const v = m[1]!.trim();
  spec.annotations ??= {};
  if (v === 'unconfined') {
    delete spec.annotations[LANDLOCK_ANNOTATION];
    return true;
  }
  if (!v) throw new UsageError('--security-opt landlock: expected landlock=FILE.json, landlock=builtin or landlock=unconfined');
  let profile: LandlockProfile;
  if (v === 'builtin') profile = BUILTIN;
  else {
    let text: string;
    try {
      text = readFileSync(v, 'utf8');
    } catch (e) {
      throw new UsageError(`--security-opt landlock=${v}: cannot read it: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, { cause: e });
    }
    try {
      profile = parseLandlockProfile(JSON.parse(text));
    } catch (e) {
      if (e instanceof ProfileProblem || e instanceof SyntaxError) throw new UsageError(`--security-opt landlock=${v}: ${e.message}`, { cause: e });
      throw e;
    }
  }
  spec.annotations[LANDLOCK_ANNOTATION] = JSON.stringify(profile);
  return true;
}

const CAP_SYS_ADMIN = 'CAP_SYS_ADMIN';

export const control: Control = {
  id: 'landlock',
  title: 'Landlock: the container restricts its own file access (read/write/execute by path)',
  ref: 'workshop control 5.2 / lab 7 (mandatory access control); CIS 5.1–5.2 have no Landlock row',
  validate(ctx: BuildContext): void {
    const p = landlockOf(ctx.spec);
    if (!p) return;
    // An empty list means securityfs is not mounted (so the LSMs are unknown, as on this
    // project's own hosts): then init's landlock_create_ruleset says, with ENOSYS (not built
    // in) or EOPNOTSUPP (not enabled at boot).
    if (ctx.host.lsms.length && !ctx.host.lsms.includes('landlock'))
      throw new UnsupportedError(`Landlock (${LANDLOCK_ANNOTATION}, --security-opt landlock) is not active on this kernel (LSMs: ${ctx.host.lsms.join(',') || 'none'}; /sys/kernel/security/lsm); add landlock to the lsm= boot parameter`);
    // landlock_restrict_self(2): EPERM unless no_new_privs is set or the caller has
    // CAP_SYS_ADMIN in its user namespace; init applies it after the capability drop.
    const proc = ctx.spec.process;
    if (!proc.noNewPrivileges && !(proc.capabilities?.effective ?? []).includes(CAP_SYS_ADMIN))
      throw new UsageError(
        `--security-opt landlock (${LANDLOCK_ANNOTATION}): landlock_restrict_self(2) needs no_new_privs or CAP_SYS_ADMIN, and the container's process has neither: add --security-opt no-new-privileges (process.noNewPrivileges)`,
      );
  },
  steps(ctx: BuildContext): Step[] {
    const p = landlockOf(ctx.spec);
    if (!p) return [];
    const rules = landlockRules(p);
    const why = 'Landlock: file access outside these rules fails with EACCES for every process of the container, root included (landlock(7))';
    return [
      child('landlock', 'landlock', `${why}; the rights are masked to the kernel's ABI (landlock_create_ruleset(NULL, 0, LANDLOCK_CREATE_RULESET_VERSION))`, op.landlockCreate(HANDLED, rightsText(HANDLED))),
      ...rules.map((r) =>
        child('landlock', 'landlock', `${r.groups.join('+')} below ${r.path}`, op.landlockRule(r.path, r.access, Boolean(p.optional), `${r.groups.join('+')} = ${rightsText(r.access)}`)),
      ),
      child('landlock', 'landlock', `${why}; last before seccomp, under no_new_privs (or CAP_SYS_ADMIN)`, op.landlockRestrict()),
    ];
  },
};
