// Mandatory access control by the kernel's label-based LSMs (workshop control 5.2, lab 7;
// CIS Docker Benchmark 5.1 AppArmor, 5.2 SELinux). The kernel confines the container's
// command to a profile (AppArmor, by path) or a label (SELinux, by type and MCS level) that
// the administrator's policy defines; tsrun only names it for the execve (OP_LSM_EXEC).
// Landlock, the third MAC layer, is src/controls/landlock.ts; docs/mac.md compares them.
//
// An LSM that is not active cannot confine anything, so a profile or label asked for on such
// a kernel is refused — flags and bundles alike — rather than silently ignored.
import { readFileSync, realpathSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import type { BuildContext, Control, Step } from '../plan/types.js';
import type { Spec } from '../spec/types.js';
import { child, parent } from '../plan/step.js';
import * as op from '../plan/ops.js';
import { TsrunError, UnsupportedError, UsageError } from '../errors.js';
import { PRIVILEGED_ANNOTATION } from './privileged.js';

export const APPARMOR_DEFAULT = 'tsrun-default';

/** /sys/kernel/security/lsm (securityfs); empty when it is not mounted. */
export function activeLsms(): string[] {
  try {
    return readFileSync('/sys/kernel/security/lsm', 'utf8').trim().split(',').filter(Boolean);
  } catch {
    return [];
  }
}

const lsmList = (lsms: string[]) => (lsms.length ? lsms.join(',') : 'none listed: is securityfs mounted on /sys/kernel/security?');

/**
 * tsrun's built-in AppArmor profile, with the effect docker's `docker-default` has: everything
 * a normal program does is allowed (files, network, capabilities the container holds), but not
 * mount(2), not writes to the kernel's knobs under /proc (sysrq-trigger, /proc/sys outside
 * kernel/shm*, the per-pid files of other tasks) and /sys, not reading kcore or firmware, and
 * signals and ptrace only among processes of this profile (or from unconfined tsrun itself).
 * Written here from apparmor.d(5), not copied: the rules are tsrun's own.
 */
export function appArmorPolicy(name = APPARMOR_DEFAULT): string {
  return `# tsrun's default container profile (src/controls/mac.ts); loaded by tsrun when missing
abi <abi/3.0>,
profile ${name} flags=(attach_disconnected,mediate_deleted) {
  # what a program inside normally needs
  file,
  network,
  capability,
  umount,
  signal (receive) peer=unconfined,
  signal (send,receive) peer=${name},
  ptrace (trace,read,tracedby,readby) peer=${name},

  # no mounts: a container with CAP_SYS_ADMIN still cannot mount over its own view
  deny mount,
  deny pivot_root,

  # the kernel's knobs: top-level /proc files and /proc/sys (but kernel/shm*, which IPC
  # namespaces own) are not writable; sysrq-trigger and kcore not even readable
  deny /proc/* w,
  deny /proc/sys/[^k]** w,
  deny /proc/sys/kernel/{?,??,[^s][^h][^m]**} w,
  deny /proc/sysrq-trigger rwklx,
  deny /proc/kcore rwklx,
  deny /proc/kmsg rwklx,

  # /sys is read-only, cgroups aside (their own delegation rules apply); firmware and
  # the LSMs' own files are out of reach
  deny /sys/[^f]*/** wklx,
  deny /sys/f[^s]*/** wklx,
  deny /sys/fs/[^c]*/** wklx,
  deny /sys/fs/c[^g]*/** wklx,
  deny /sys/fs/cg[^r]*/** wklx,
  deny /sys/firmware/** rwklx,
  deny /sys/kernel/security/** rwklx,
}
`;
}

export const SELINUX_PROCESS_TYPE = 'container_t';
export const SELINUX_FILE_TYPE = 'container_file_t';

/** A context user:role:type:level (the level may hold ':' — s0:c1,c2). */
function splitContext(c: string): [string, string, string, string] {
  const [u = '', r = '', t = '', ...lvl] = c.split(':');
  return [u, r, t, lvl.join(':')];
}

/**
 * A random MCS pair, as docker and podman allocate one per container: two different
 * categories out of c0.c1023, so two containers' files differ unless the pair collides
 * (1 in 523,776). The policy's MCS constraint on container_t does the separating.
 */
export function randomMcsLevel(rand: () => number = Math.random): string {
  const a = Math.floor(rand() * 1024);
  let b = Math.floor(rand() * 1023);
  if (b >= a) b++;
  return `s0:c${Math.min(a, b)},c${Math.max(a, b)}`;
}

/** Flags path on an SELinux host: container_t with a fresh MCS pair, its files container_file_t with the same pair. */
export function setSelinuxDefault(spec: Spec, lsms: string[] = activeLsms()): void {
  if (!lsms.includes('selinux') || spec.process.selinuxLabel !== undefined) return;
  const level = randomMcsLevel();
  spec.process.selinuxLabel = `system_u:system_r:${SELINUX_PROCESS_TYPE}:${level}`;
  spec.linux.mountLabel = `system_u:object_r:${SELINUX_FILE_TYPE}:${level}`;
}

/** Mount data with SELinux's context= option for the file systems tsrun creates (tmpfs, the overlay root). */
export function withMountLabel(spec: Spec, fstype: string, data: string): string {
  const label = spec.linux.mountLabel;
  if (!label || !['tmpfs', 'overlay'].includes(fstype)) return data;
  // the level's comma would split the option list: quote it (mount(8), "context=")
  return `${data ? `${data},` : ''}context="${label}"`;
}

function applyLabelOpt(spec: Spec, value: string, opt: string): void {
  const v = value.trim();
  if (v === 'disable') {
    delete spec.process.selinuxLabel;
    delete spec.linux.mountLabel;
    return;
  }
  const m = /^(user|role|type|level|filetype):(.+)$/s.exec(v);
  if (!m || /[\s\0"]/.test(m[2]!)) throw new UsageError(`--security-opt ${JSON.stringify(opt)}: expected label=user:U, role:R, type:T, level:L, filetype:T or disable`);
  const [, key, val] = m as unknown as [string, string, string];
  const level = randomMcsLevel();
  const p = splitContext(spec.process.selinuxLabel ?? `system_u:system_r:${SELINUX_PROCESS_TYPE}:${level}`);
  const f = splitContext(spec.linux.mountLabel ?? `system_u:object_r:${SELINUX_FILE_TYPE}:${p[3]}`);
  if (key === 'user') p[0] = val;
  else if (key === 'role') p[1] = val;
  else if (key === 'type') p[2] = val;
  else if (key === 'filetype') f[2] = val;
  else {
    p[3] = val;
    f[3] = val;
  }
  spec.process.selinuxLabel = p.join(':');
  spec.linux.mountLabel = f.join(':');
}

/** `-v SRC:DST:z|Z` without SELinux: the refusal (undefined where SELinux is active). */
export function relabelRefusal(flag: string, v: string, o: string, lsms: string[] = activeLsms()): UnsupportedError | undefined {
  if (lsms.includes('selinux')) return undefined;
  return new UnsupportedError(`${flag} ${JSON.stringify(v)}: :${o} relabels for SELinux, which is not active on this kernel (LSMs: ${lsmList(lsms)})`);
}

/**
 * Host directories a volume's :z/:Z must never relabel: the system's own trees (relabelling
 * /etc or /usr to container_file_t would hand them to every container, or lock the host's
 * services out of them). Exact paths, after resolving symlinks; their subdirectories are fine.
 */
export const RELABEL_REFUSED = ['/', '/bin', '/boot', '/dev', '/etc', '/home', '/lib', '/lib32', '/lib64', '/libx32', '/media', '/mnt', '/opt', '/proc', '/root', '/run', '/sbin', '/srv', '/sys', '/tmp', '/usr', '/var', '/var/lib', '/var/log', '/var/tmp'];

/** The label :z (shared by every container: no categories) or :Z (this container's pair) gives. */
export function relabelTarget(spec: Spec, o: 'z' | 'Z'): string {
  const [u, r, t, level] = splitContext(spec.linux.mountLabel ?? `system_u:object_r:${SELINUX_FILE_TYPE}:s0`);
  return `${u}:${r}:${t}:${o === 'z' ? 's0' : level}`;
}

/** The parent step behind :z/:Z — chcon(1) sets security.selinux with lsetxattr, never following symlinks. */
export function relabel(path: string, label: string): void {
  const r = spawnSync('chcon', ['-R', '-P', '-h', label, path], { encoding: 'utf8' });
  if (r.error) throw new UnsupportedError(`relabel ${path}: chcon: ${(r.error as NodeJS.ErrnoException).code ?? r.error.message} (coreutils)`, { cause: r.error });
  if (r.status !== 0) throw new TsrunError(`relabel ${path} to ${label}: ${r.stderr.trim()}`);
}

/** Flags path: docker's default — the built-in profile whenever AppArmor is active. */
export function setAppArmorDefault(spec: Spec, lsms: string[] = activeLsms()): void {
  if (lsms.includes('apparmor') && spec.process.apparmorProfile === undefined) spec.process.apparmorProfile = APPARMOR_DEFAULT;
}

/**
 * `--security-opt apparmor=PROFILE|unconfined` and `--security-opt label=...`; `name` is the
 * part before = (or docker's old `:`). Refused with the LSM list when the LSM is not active.
 */
export function applyMacSecurityOpt(spec: Spec, name: 'apparmor' | 'label', value: string | undefined, opt: string, lsms: string[] = activeLsms()): void {
  if (name === 'apparmor') {
    if (!lsms.includes('apparmor')) throw new UnsupportedError(`--security-opt ${opt}: AppArmor is not active on this kernel (LSMs: ${lsmList(lsms)})`);
    const v = (value ?? '').trim();
    if (!v || /[\s\0]/.test(v)) throw new UsageError(`--security-opt ${JSON.stringify(opt)}: expected apparmor=PROFILE or apparmor=unconfined`);
    spec.process.apparmorProfile = v;
    return;
  }
  if (!lsms.includes('selinux')) throw new UnsupportedError(`--security-opt ${opt}: SELinux is not active on this kernel (LSMs: ${lsmList(lsms)})`);
  applyLabelOpt(spec, value ?? '', opt);
}

/** The parent-side step behind OP_LSM_EXEC for the built-in profile: load it when the kernel lacks it. */
export function ensureAppArmorProfile(profile: string, policy: string): void {
  let loaded = '';
  try {
    loaded = readFileSync('/sys/kernel/security/apparmor/profiles', 'utf8');
  } catch (e) {
    throw new UnsupportedError(`AppArmor profile ${profile}: cannot read /sys/kernel/security/apparmor/profiles: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, { cause: e });
  }
  if (loaded.split('\n').some((l) => l.startsWith(`${profile} (`))) return;
  // -r: replace or add; -K: no cache file written on the host; policy on stdin
  const r = spawnSync('apparmor_parser', ['-r', '-K'], { input: policy, encoding: 'utf8' });
  if (r.error) throw new UnsupportedError(`AppArmor profile ${profile}: apparmor_parser: ${(r.error as NodeJS.ErrnoException).code ?? r.error.message} (install the apparmor package)`, { cause: r.error });
  if (r.status !== 0) throw new TsrunError(`AppArmor profile ${profile}: apparmor_parser -r failed (${r.status}): ${r.stderr.trim()}`);
}

export const control: Control = {
  id: 'mac',
  title: 'AppArmor profile / SELinux label of the container\'s process',
  ref: 'CIS 5.1 (AppArmor), 5.2 (SELinux); workshop control 5.2, lab 7',
  validate(ctx: BuildContext): void {
    const { spec, host } = ctx;
    const aa = spec.process.apparmorProfile;
    if (aa && aa !== 'unconfined' && !host.lsms.includes('apparmor'))
      throw new UnsupportedError(`process.apparmorProfile ${JSON.stringify(aa)}: AppArmor is not active on this kernel (LSMs: ${lsmList(host.lsms)})`);
    for (const [field, v] of [['process.selinuxLabel', spec.process.selinuxLabel], ['linux.mountLabel', spec.linux.mountLabel]] as const) {
      if (!v) continue;
      if (!host.lsms.includes('selinux')) throw new UnsupportedError(`${field} ${JSON.stringify(v)}: SELinux is not active on this kernel (LSMs: ${lsmList(host.lsms)})`);
      if (splitContext(v).some((x) => !x) || /[\s\0"]/.test(v)) throw new UnsupportedError(`${field} ${JSON.stringify(v)}: expected user:role:type:level`);
    }
    for (const m of relabelled(spec)) {
      if (!host.lsms.includes('selinux')) throw new UnsupportedError(`mounts ${m.destination}: option ${m.o} relabels for SELinux, which is not active on this kernel (LSMs: ${lsmList(host.lsms)})`);
      let real = m.source;
      try {
        real = realpathSync(m.source);
      } catch {
        /* the mounts control reports a missing source */
      }
      if (RELABEL_REFUSED.includes(real)) throw new UsageError(`mounts ${m.destination}: refusing to relabel ${real} (:${m.o}): it is a system directory; bind a subdirectory instead`);
    }
  },
  steps(ctx: BuildContext): Step[] {
    const se = ctx.spec.process.selinuxLabel;
    // docker: --privileged runs with labelling off unless a type is named (the default is not)
    const privilegedDefault = ctx.spec.annotations?.[PRIVILEGED_ANNOTATION] === 'true' && se !== undefined && splitContext(se)[2] === SELINUX_PROCESS_TYPE;
    const seSteps: Step[] = se && !privilegedDefault
      ? [child('system', 'mac', `the command runs as SELinux ${se}: the policy decides what it may touch, and MCS keeps other containers' files (another category pair) out (CIS 5.2)`, op.lsmExec('selinux', se))]
      : [];
    const relabels: Step[] = relabelled(ctx.spec).map((m) => {
      const label = relabelTarget(ctx.spec, m.o);
      return parent('prepare', 'mac', `:${m.o}: the volume's files get ${m.o === 'z' ? 'the label every container shares' : "this container's own MCS pair"}, so container_t may use them`, { action: 'selinux-relabel', path: m.source, label }, `chcon -R -P -h ${label} ${m.source} (lsetxattr security.selinux)`);
    });
    return [...relabels, ...seSteps, ...appArmorSteps(ctx)];
  },
};

function relabelled(spec: Spec): { source: string; destination: string; o: 'z' | 'Z' }[] {
  const out: { source: string; destination: string; o: 'z' | 'Z' }[] = [];
  for (const m of spec.mounts ?? []) {
    const o = (m.options ?? []).find((x) => x === 'z' || x === 'Z') as 'z' | 'Z' | undefined;
    if (o && m.source && (m.type === 'bind' || (m.options ?? []).some((x) => x === 'bind' || x === 'rbind'))) out.push({ source: m.source, destination: m.destination, o });
  }
  return out;
}

function appArmorSteps(ctx: BuildContext): Step[] {
  const aa = ctx.spec.process.apparmorProfile;
  if (!aa || aa === 'unconfined') return [];
  // docker: --privileged runs unconfined unless a profile is named (the default is not)
  if (aa === APPARMOR_DEFAULT && ctx.spec.annotations?.[PRIVILEGED_ANNOTATION] === 'true') return [];
  const steps: Step[] = [];
  if (aa === APPARMOR_DEFAULT)
    steps.push(
      parent('prepare', 'mac', 'the built-in profile must be in the kernel before any execve asks for it (apparmor_parser(8))', { action: 'apparmor-load', profile: aa, policy: appArmorPolicy(aa) }, `apparmor_parser -r -K <tsrun-default policy> (only if /sys/kernel/security/apparmor/profiles lacks ${aa})`),
    );
  steps.push(
    child('system', 'mac', `the command runs confined by AppArmor profile ${aa}: denied file, mount, signal and ptrace operations fail with EACCES (CIS 5.1)`, op.lsmExec('apparmor', aa)),
  );
  return steps;
}
