// `tsrun explain --summary`: one line per security control — on or off, its value, where the
// value came from (a flag, the config file, the image, tsrun's default, or a bundle's
// config.json), its workshop/CIS id, and the kernel file that shows it once the container
// runs (what `tsrun audit` reads). Controls that are off are listed too: an absent line
// would hide exactly what a learner needs to see.
//
// Pure: it reads the final spec plus the parsed options and the config, and infers each
// value's origin from which of them set it (the later layer wins: default < config < flag).
import type { TsrunConfig } from '../config/index.js';
import { DOCKER_DEFAULT_CAPS, capMask, maskNames } from '../controls/capabilities.js';
import { PRIVILEGED_ANNOTATION } from '../controls/privileged.js';
import { LANDLOCK_ANNOTATION } from '../controls/landlock.js';
import { APPARMOR_DEFAULT } from '../controls/mac.js';
import type { Spec } from '../spec/types.js';

export interface SummaryRow {
  control: string;
  on: boolean;
  value: string;
  /** "flag --x", "config KEY", "image User", "default", "bundle config.json" */
  source: string;
  /** CIS Docker Benchmark v1.2.0 id (the workshop's), docker-bench's current in parentheses; "-" if none */
  ref: string;
  /** where to see it in the kernel once the container runs */
  kernel: string;
}

export interface SummaryInput {
  spec: Spec;
  /** commander's parsed run options (empty for a bundle) */
  opts: Record<string, unknown>;
  config: TsrunConfig;
  /** the spec came from a bundle's config.json: it states its whole policy */
  bundle?: boolean;
  /** active LSMs (AppArmor/SELinux rows are off when they are not active) */
  lsms?: string[];
}

const given = (v: unknown) => v !== undefined && v !== false && !(Array.isArray(v) && v.length === 0);

function secOpts(opts: Record<string, unknown>): string[] {
  const v = opts.securityOpt;
  return (Array.isArray(v) ? v : v === undefined ? [] : [v]).map(String);
}

/** The first source that applies, from the most specific layer down. */
function origin(input: SummaryInput, flag: string | undefined, configKey?: keyof TsrunConfig, image?: string): string {
  if (input.bundle) return 'bundle config.json';
  if (flag) return `flag ${flag}`;
  if (image) return `image ${image}`;
  if (configKey && input.config[configKey] !== undefined) return `config ${configKey}`;
  return 'default';
}

const GENERATED = new Set(['/etc/hostname', '/etc/hosts', '/etc/resolv.conf']);

const cg = (v1: string, v2: string) => `${v1 === v2 ? v1 : `${v1} (v1) / ${v2} (v2)`} in /proc/PID/cgroup's cgroup`;

export function summarize(input: SummaryInput): SummaryRow[] {
  const { spec, opts } = input;
  const ns = new Set(spec.linux.namespaces.filter((n) => !n.path).map((n) => n.type));
  const res = spec.linux.resources ?? {};
  const privileged = spec.annotations?.[PRIVILEGED_ANNOTATION] === 'true';
  const privFlag = given(opts.privileged) ? '--privileged' : undefined;
  const sec = secOpts(opts);
  const rows: SummaryRow[] = [];
  const row = (r: SummaryRow) => rows.push(r);

  const uid = spec.linux.uidMappings?.[0];
  row({
    control: 'userns',
    on: ns.has('user'),
    value: ns.has('user') ? (uid ? `root = host uid ${uid.hostID} (${uid.size} ids)` : 'own user namespace') : 'host user namespace: root is host root',
    source: origin(input, given(opts.usernsRemap) ? '--userns-remap' : given(opts.userns) ? '--userns' : undefined, 'userns-remap'),
    ref: '5.30 (5.31), 2.8 (2.9)',
    kernel: '/proc/PID/uid_map, /proc/PID/ns/user',
  });
  const network = String(opts.network ?? 'none');
  row({ control: 'net namespace', on: ns.has('network'), value: input.bundle ? (ns.has('network') ? 'own' : 'host') : network, source: origin(input, given(opts.network) ? '--network' : undefined), ref: '5.9 (5.10)', kernel: '/proc/PID/ns/net vs /proc/1/ns/net' });
  for (const [type, ref] of [['pid', '5.15 (5.16)'], ['ipc', '5.16 (5.17)'], ['uts', '5.20 (5.21)'], ['mount', '-']] as const) {
    row({ control: `${type} namespace`, on: ns.has(type), value: ns.has(type) ? 'own' : 'host', source: origin(input, undefined), ref, kernel: `/proc/PID/ns/${type === 'mount' ? 'mnt' : type}` });
  }
  row({ control: 'cgroup namespace', on: ns.has('cgroup'), value: ns.has('cgroup') ? 'own' : 'host', source: origin(input, given(opts.cgroupns) ? '--cgroupns' : undefined), ref: '-', kernel: '/proc/PID/ns/cgroup' });

  const bnd = capMask(spec.process.capabilities?.bounding ?? [], 'bounding');
  const dflt = capMask(DOCKER_DEFAULT_CAPS, 'default');
  const added = maskNames(bnd & ~dflt).map((c) => `+${c.slice(4)}`);
  const dropped = maskNames(dflt & ~bnd).map((c) => `-${c.slice(4)}`);
  const capFlag = privFlag ?? (given(opts.capAdd) ? '--cap-add' : given(opts.capDrop) ? '--cap-drop' : undefined);
  row({
    control: 'capabilities',
    on: !privileged,
    // a short difference from docker's default reads best; a much smaller set, by its names
    value: `${maskNames(bnd).length} in the bounding set${added.length + dropped.length > 6 ? `: ${maskNames(bnd).map((c) => c.slice(4)).join(',')}` : added.length || dropped.length ? `: docker's default ${[...added, ...dropped].join(' ')}` : " (docker's default)"}`,
    source: origin(input, capFlag),
    ref: '5.3 (5.4)',
    kernel: '/proc/PID/status CapBnd, CapEff',
  });
  row({ control: 'privileged', on: privileged, value: privileged ? 'every capability, no seccomp, all devices, no masked paths' : 'no', source: origin(input, privFlag), ref: '5.4 (5.5)', kernel: '/proc/PID/status CapBnd; devices.list' });
  row({ control: 'read-only rootfs', on: Boolean(spec.root.readonly), value: spec.root.readonly ? 'ro' : 'rw', source: origin(input, given(opts.readOnly) ? '--read-only' : undefined), ref: '5.12 (5.13)', kernel: "/proc/PID/mountinfo: the / line's options" });

  const nnpFlag = sec.some((o) => /^no-new-privileges/.test(o)) ? '--security-opt no-new-privileges' : undefined;
  row({ control: 'no_new_privs', on: Boolean(spec.process.noNewPrivileges), value: spec.process.noNewPrivileges ? 'set' : 'not set', source: origin(input, nnpFlag, 'no-new-privileges'), ref: '5.25 (5.26), 2.17 (2.14)', kernel: '/proc/PID/status NoNewPrivs' });

  const scFlag = sec.find((o) => /^seccomp[=:]/.test(o));
  const sc = spec.linux.seccomp;
  const scValue = sc ? `${scFlag ? scFlag.slice(8) : input.config['seccomp-profile'] && !input.bundle ? input.config['seccomp-profile'] : "built-in (docker's default)"}: ${sc.syscalls?.length ?? 0} rules, default ${sc.defaultAction}` : 'unconfined';
  row({ control: 'seccomp', on: Boolean(sc), value: scValue, source: origin(input, scFlag ? '--security-opt seccomp' : privFlag, 'seccomp-profile'), ref: '5.21 (5.22), 2.15 (2.17)', kernel: '/proc/PID/status Seccomp, Seccomp_filters' });

  const mem = res.memory?.limit;
  row({ control: 'memory', on: mem !== undefined && mem > 0, value: mem !== undefined && mem > 0 ? `${mem} bytes` : 'unlimited', source: origin(input, given(opts.memory) ? '--memory' : undefined), ref: '5.10 (5.11)', kernel: cg('memory.limit_in_bytes', 'memory.max') });
  const shares = res.cpu?.shares;
  const quota = res.cpu?.quota;
  row({
    control: 'cpu',
    on: shares !== undefined || (quota !== undefined && quota > 0),
    value: [shares !== undefined ? `shares ${shares}` : 'shares 1024 (default)', quota !== undefined && quota > 0 ? `quota ${quota}/${res.cpu?.period ?? 100000} us` : ''].filter(Boolean).join(', '),
    source: origin(input, given(opts.cpuShares) ? '--cpu-shares' : given(opts.cpus) ? '--cpus' : given(opts.cpuQuota) ? '--cpu-quota' : undefined),
    ref: '5.11 (5.12)',
    kernel: cg('cpu.shares, cpu.cfs_quota_us', 'cpu.weight, cpu.max'),
  });
  const pids = res.pids?.limit;
  row({ control: 'pids limit', on: pids !== undefined && pids > 0, value: pids !== undefined && pids > 0 ? String(pids) : 'max', source: origin(input, given(opts.pidsLimit) ? '--pids-limit' : undefined), ref: '5.28 (5.29)', kernel: cg('pids.max', 'pids.max') });
  row({ control: 'cgroup', on: true, value: spec.linux.cgroupsPath ?? `tsrun/<id> (default)`, source: origin(input, given(opts.cgroupParent) ? '--cgroup-parent' : undefined), ref: '5.24 (5.25)', kernel: '/proc/PID/cgroup' });

  const devs = spec.linux.devices ?? [];
  const allDevices = (res.devices ?? []).some((d) => d.allow && (d.type === undefined || d.type === 'a') && d.major == null && (d.access ?? 'rwm') === 'rwm');
  row({ control: 'host devices', on: devs.length > 0 || allDevices, value: allDevices ? 'every device (a *:* rwm)' : devs.length ? devs.map((d) => d.path).join(', ') : 'none beyond the defaults', source: origin(input, privFlag ?? (given(opts.device) ? '--device' : undefined)), ref: '5.17 (5.18)', kernel: 'devices.list (v1); a BPF program (v2); /proc/PID/mountinfo' });

  const rl = spec.process.rlimits ?? [];
  row({ control: 'ulimits', on: rl.length > 0, value: rl.length ? rl.map((r) => `${r.type.replace(/^RLIMIT_/, '').toLowerCase()}=${r.soft}:${r.hard}`).join(' ') : "tsrun's own (inherited)", source: origin(input, given(opts.ulimit) ? '--ulimit' : undefined, 'default-ulimits'), ref: '5.18 (5.19), 2.7 (2.8)', kernel: '/proc/PID/limits' });

  const prop = spec.linux.rootfsPropagation ?? 'rprivate';
  row({ control: 'mount propagation', on: !/shared/.test(prop), value: prop, source: origin(input, undefined), ref: '5.19 (5.20)', kernel: '/proc/PID/mountinfo: no shared:N field' });
  // the generated /etc/hostname, hosts and resolv.conf come from the container's own directory
  const binds = (spec.mounts ?? []).filter((m) => (m.type === 'bind' || (m.options ?? []).some((o) => /^r?bind$/.test(o))) && !(GENERATED.has(m.destination) && (m.source ?? '').endsWith(m.destination.slice(4))));
  row({ control: 'host bind mounts', on: binds.length > 0, value: binds.length ? binds.map((m) => `${m.source}:${m.destination}${(m.options ?? []).includes('ro') ? ':ro' : ''}`).join(' ') : 'none', source: origin(input, given(opts.volume) ? '--volume' : undefined), ref: '5.5 (5.6), 5.31 (5.32)', kernel: '/proc/PID/mountinfo: root field and device' });
  const masked = spec.linux.maskedPaths ?? [];
  const sysFlag = sec.some((o) => /^systempaths/.test(o)) ? '--security-opt systempaths' : privFlag;
  row({ control: 'masked paths', on: masked.length > 0, value: `${masked.length} masked, ${(spec.linux.readonlyPaths ?? []).length} read-only`, source: origin(input, sysFlag), ref: '-', kernel: '/proc/PID/mountinfo' });
  const u = spec.process.user;
  const imageUser = !given(opts.user) && u.uid !== 0 ? 'User' : undefined;
  row({ control: 'user', on: u.uid !== 0, value: `uid ${u.uid} gid ${u.gid}`, source: origin(input, given(opts.user) ? '--user' : undefined, undefined, imageUser), ref: '4.1 (4.1)', kernel: '/proc/PID/status Uid, Gid' });
  const lsms = input.lsms ?? [];
  const aa = lsms.includes('apparmor') ? spec.process.apparmorProfile : undefined;
  const aaOn = Boolean(aa && aa !== 'unconfined' && !(privileged && aa === APPARMOR_DEFAULT));
  row({ control: 'AppArmor', on: aaOn, value: !lsms.includes('apparmor') ? 'not active on this kernel' : aaOn ? `profile ${aa}` : 'unconfined', source: origin(input, sec.some((o) => /^apparmor/.test(o)) ? '--security-opt apparmor' : privFlag), ref: '5.1 (5.2)', kernel: '/proc/PID/attr/apparmor/current' });
  row({ control: 'SELinux', on: false, value: lsms.includes('selinux') ? 'no label (tsrun sets none)' : 'not active on this kernel', source: 'default', ref: '5.2 (5.3)', kernel: '/proc/PID/attr/current' });
  const ll = spec.annotations?.[LANDLOCK_ANNOTATION];
  const llRules = ll ? (JSON.parse(ll) as Record<string, unknown>) : undefined;
  row({
    control: 'Landlock',
    on: Boolean(ll),
    value: llRules ? ['read', 'write', 'execute'].map((g) => `${g} ${((llRules[g] as string[] | undefined) ?? []).join(',') || '-'}`).join('; ') : 'none',
    source: origin(input, sec.some((o) => /^landlock/.test(o)) ? '--security-opt landlock' : undefined),
    ref: '-',
    kernel: 'no /proc field: a denied access fails with EACCES',
  });
  return rows;
}

export function renderSummary(rows: SummaryRow[]): string {
  const head = ['', 'CONTROL', 'VALUE', 'FROM', 'CIS 1.2.0 (bench)', 'SEE IN THE KERNEL'];
  const table = [head, ...rows.map((r) => [r.on ? 'on' : 'off', r.control, r.value, r.source, r.ref, r.kernel])];
  const widths = head.map((_, i) => Math.max(...table.map((t) => t[i]!.length)));
  const lines = table.map((t) => t.map((c, i) => (i === t.length - 1 ? c : c.padEnd(widths[i]!))).join('  ').trimEnd());
  return lines.join('\n') + '\n(PID: the container\'s pid, `tsrun state ID`; `tsrun audit ID` reads these files)\n';
}
