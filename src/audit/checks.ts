// The container checks of `tsrun audit` (CIS Docker Benchmark section 5), as data: each has
// the workshop's id (CIS v1.2.0, as the slides number them), docker-bench-security's current
// id (CIS v1.6.0, where a swarm check was inserted as 5.1, so each is one higher), a title,
// and a function that judges the kernel's facts about one process (src/audit/facts.ts).
// docs/audit.md explains each one and how to make it pass.
import { CAPABILITIES, DOCKER_DEFAULT_CAPS, capMask, maskNames } from '../controls/capabilities.js';
import { hostPathOf, type DnatRule, type HostView, type MountLine, type NsName, type ProcessFacts } from './facts.js';

export type Status = 'PASS' | 'WARN' | 'INFO' | 'NOTE';

export interface Verdict {
  status: Status;
  detail: string;
}

export interface Check<F> {
  /** CIS Docker Benchmark v1.2.0 (the workshop's numbering); '-' when CIS has no such check */
  id: string;
  /** docker-bench-security's current numbering (CIS v1.6.0) */
  idCurrent: string;
  title: string;
  run(facts: F, host: HostView): Verdict;
}

const pass = (detail: string): Verdict => ({ status: 'PASS', detail });
const warn = (detail: string): Verdict => ({ status: 'WARN', detail });
const info = (detail: string): Verdict => ({ status: 'INFO', detail });
const note = (detail: string): Verdict => ({ status: 'NOTE', detail });

const inode = (link: string | undefined) => /\[(\d+)\]/.exec(link ?? '')?.[1] ?? '?';

function nsCheck(ns: NsName, id: string, idCurrent: string, what: string): Check<ProcessFacts> {
  return {
    id,
    idCurrent,
    title: `Ensure the host's ${what} namespace is not shared`,
    run(f, h) {
      const mine = f.ns[ns];
      const theirs = h.ns[ns];
      if (!mine || !theirs) return note(`/proc/${f.pid}/ns/${ns}: not available on this kernel`);
      const where = `/proc/${f.pid}/ns/${ns} = ${mine}, host ${theirs}`;
      return mine === theirs ? warn(`shares the host's ${ns} namespace (${where})`) : pass(`own ${ns} namespace (inode ${inode(mine)}; host ${inode(theirs)})`);
    },
  };
}

/** The CIS list of host directories a container must not mount (5.5). */
export const SENSITIVE_DIRS = ['/', '/boot', '/dev', '/etc', '/lib', '/proc', '/sys', '/usr'];

/** Filesystems a runtime mounts fresh for the container at the same place as the host's. */
const PSEUDO_FS = new Set(['proc', 'sysfs', 'cgroup', 'cgroup2', 'devpts', 'mqueue', 'securityfs', 'debugfs', 'tracefs', 'bpf', 'pstore']);

/** Container mounts that are binds of a host path, with that path. */
export function hostBinds(mounts: MountLine[], host: MountLine[]): { mount: MountLine; hostPath: string }[] {
  const out: { mount: MountLine; hostPath: string }[] = [];
  for (const m of mounts) {
    const hostPath = hostPathOf(m, host);
    if (hostPath === undefined) continue;
    // sysfs of a shared network namespace (and proc of a shared pid namespace on old kernels)
    // is the same superblock as the host's: the runtime's own /sys, not a bind of it.
    if (PSEUDO_FS.has(m.fsType) && m.mountPoint === hostPath) continue;
    out.push({ mount: m, hostPath });
  }
  return out;
}

/** Sockets of container engines and runtimes: whoever reaches one controls the host (5.31). */
export const RUNTIME_SOCKET = /^(docker|containerd|containerd-shim|podman|crio|cri-dockerd|dockershim|tsrun|buildkitd)\.sock$/;

/** The device cgroup rules every container gets from docker/tsrun/runc (v1 devices.list form). */
const DEFAULT_DEVICES = new Set(['c *:* m', 'b *:* m', 'c 1:3 rwm', 'c 1:5 rwm', 'c 1:7 rwm', 'c 1:8 rwm', 'c 1:9 rwm', 'c 5:0 rwm', 'c 5:1 rwm', 'c 5:2 rwm', 'c 136:* rwm', 'c 10:200 rwm']);

/** Every capability root holds here: a privileged container gets exactly these. */
const fullMask = (h: HostView) => h.capBnd & ((1n << BigInt(h.capLastCap + 1)) - 1n);

function lsmCheck(id: string, idCurrent: string, lsm: 'apparmor' | 'selinux', title: string): Check<ProcessFacts> {
  return {
    id,
    idCurrent,
    title,
    run(f, h) {
      if (!h.lsms.includes(lsm)) return note(`${lsm === 'apparmor' ? 'AppArmor' : 'SELinux'} is not active on this kernel (active LSMs: ${h.lsms.join(',') || 'neither AppArmor nor SELinux'}); no container can be confined by it here`);
      const label = lsm === 'apparmor' ? (f.lsm.apparmor ?? f.lsm.current) : f.lsm.current;
      const file = lsm === 'apparmor' ? `/proc/${f.pid}/attr/apparmor/current` : `/proc/${f.pid}/attr/current`;
      if (!label || label === 'unconfined' || /unconfined_t|spc_t/.test(label)) return warn(`${file}: ${label ?? '(empty)'}`);
      return pass(`${file}: ${label}`);
    },
  };
}

/** A cgroup limit: "max" / the v1 "unlimited" value mean none. */
function unlimited(v: string): boolean {
  return v === 'max' || v === '-1' || (/^\d+$/.test(v) && BigInt(v) >= 0x7ffffffffffff000n);
}

export const CONTAINER_CHECKS: readonly Check<ProcessFacts>[] = [
  lsmCheck('5.1', '5.2', 'apparmor', 'Ensure that, if applicable, an AppArmor profile is enabled'),
  lsmCheck('5.2', '5.3', 'selinux', 'Ensure that, if applicable, SELinux security options are set'),
  {
    id: '5.3',
    idCurrent: '5.4',
    title: 'Ensure that Linux kernel capabilities are restricted within containers',
    run(f) {
      const extra = maskNames(f.status.capBnd & ~capMask(DOCKER_DEFAULT_CAPS, 'default'));
      const n = CAPABILITIES.filter((c) => (f.status.capBnd >> BigInt(c.bit)) & 1n).length;
      const eff = `CapEff ${f.status.capEff.toString(16).padStart(16, '0')}`;
      if (extra.length) return warn(`bounding set (/proc/${f.pid}/status CapBnd) has ${n} capabilities, beyond docker's default: ${extra.map((c) => c.replace(/^CAP_/, '')).join(',')}; ${eff}`);
      return pass(`bounding set has ${n} capabilities, all within docker's default 14; ${eff}`);
    },
  },
  {
    id: '5.4',
    idCurrent: '5.5',
    title: 'Ensure that privileged containers are not used',
    run(f, h) {
      const all = fullMask(h);
      if ((f.status.capBnd & all) === all) {
        const why = [`every capability the host's root holds (CapBnd ${f.status.capBnd.toString(16)})`, f.status.seccomp === 0 ? 'no seccomp' : '', f.cgroup.devices?.value.split('\n').includes('a *:* rwm') ? 'every device (a *:* rwm)' : ''].filter(Boolean);
        return warn(`privileged: ${why.join(', ')}`);
      }
      return pass(`not privileged: the bounding set lacks ${maskNames(all & ~f.status.capBnd).length} capabilities`);
    },
  },
  {
    id: '5.5',
    idCurrent: '5.6',
    title: 'Ensure sensitive host system directories are not mounted on containers',
    run(f, h) {
      const bad = hostBinds(f.mounts, h.mounts).filter((b) => SENSITIVE_DIRS.includes(b.hostPath));
      if (bad.length) return warn(bad.map((b) => `host ${b.hostPath} on ${b.mount.mountPoint} (${b.mount.mountOptions.includes('ro') ? 'ro' : 'rw'})`).join('; '));
      return pass(`no bind of ${SENSITIVE_DIRS.join(' ')} in /proc/${f.pid}/mountinfo`);
    },
  },
  portCheck('5.7', '5.8', 'Ensure privileged ports are not mapped within containers', (m) => m.hostPort < 1024, ' (host ports below 1024)'),
  nsCheck('net', '5.9', '5.10', 'network'),
  {
    id: '5.10',
    idCurrent: '5.11',
    title: 'Ensure that the memory usage for containers is limited',
    run(f) {
      const m = f.cgroup.memory;
      if (!m) return note('no memory controller for this process');
      return unlimited(m.value) ? warn(`${m.file} = ${m.value} (unlimited)`) : pass(`${m.file} = ${m.value}`);
    },
  },
  {
    id: '5.11',
    idCurrent: '5.12',
    title: 'Ensure that CPU priority is set appropriately on containers',
    run(f) {
      const c = f.cgroup.cpu;
      if (!c) return note('no cpu controller for this process');
      // the defaults: cpu.shares 1024 (v1), cpu.weight 100 (v2) — "not set", as docker-bench reads it
      const dflt = c.file.endsWith('cpu.shares') ? '1024' : '100';
      return c.value === dflt ? warn(`${c.file} = ${c.value} (the default: not set)`) : pass(`${c.file} = ${c.value}`);
    },
  },
  {
    id: '5.12',
    idCurrent: '5.13',
    title: "Ensure that the container's root filesystem is mounted as read only",
    run(f) {
      const root = f.mounts.filter((m) => m.mountPoint === '/').at(-1);
      if (!root) return note(`/proc/${f.pid}/mountinfo has no / mount`);
      const ro = root.mountOptions.includes('ro');
      const what = `/ is ${root.fsType} ${ro ? 'ro' : 'rw'} (/proc/${f.pid}/mountinfo mount ${root.mountId})`;
      return ro ? pass(what) : warn(what);
    },
  },
  nsCheck('pid', '5.15', '5.16', 'process ID'),
  nsCheck('ipc', '5.16', '5.17', 'IPC'),
  {
    id: '5.17',
    idCurrent: '5.18',
    title: 'Ensure that host devices are not directly exposed to containers',
    run(f) {
      const d = f.cgroup.devices;
      if (!d) return note('cgroup v2: device access is a BPF program attached to the cgroup, not a readable list');
      const rules = d.value.split('\n').map((l) => l.trim()).filter(Boolean);
      if (rules.includes('a *:* rwm')) return warn(`${d.file}: a *:* rwm (every device)`);
      const extra = rules.filter((r) => !DEFAULT_DEVICES.has(r));
      return extra.length ? warn(`${d.file}: beyond the default devices: ${extra.join(', ')}`) : pass(`${d.file}: only the default devices (${rules.length} rules)`);
    },
  },
  {
    id: '5.18',
    idCurrent: '5.19',
    title: 'Ensure that the default ulimit is overwritten at runtime if needed',
    run(f, h) {
      const show = (n: string) => `${n}=${f.limits[n]?.soft ?? '?'}:${f.limits[n]?.hard ?? '?'}`;
      const changed = ['nofile', 'nproc'].filter((n) => f.limits[n] && h.limits[n] && (f.limits[n].soft !== h.limits[n].soft || f.limits[n].hard !== h.limits[n].hard));
      const now = `/proc/${f.pid}/limits ${show('nofile')} ${show('nproc')}`;
      return changed.length ? pass(`${now}; set: differs from tsrun's own in ${changed.join(', ')}`) : info(`${now}: tsrun's own, inherited: not set for the container`);
    },
  },
  {
    id: '5.19',
    idCurrent: '5.20',
    title: 'Ensure mount propagation mode is not set to shared',
    run(f) {
      const shared = f.mounts.filter((m) => m.optional.some((o) => o.startsWith('shared:')));
      if (shared.length) return warn(`shared with a peer group: ${shared.map((m) => `${m.mountPoint} (${m.optional.join(' ')})`).join(', ')}`);
      return pass(`no mount in /proc/${f.pid}/mountinfo is shared`);
    },
  },
  nsCheck('uts', '5.20', '5.21', 'UTS'),
  {
    id: '5.21',
    idCurrent: '5.22',
    title: 'Ensure the default seccomp profile is not disabled',
    run(f) {
      const s = f.status;
      const n = s.seccompFilters !== undefined ? `, ${s.seccompFilters} filter(s)` : '';
      if (s.seccomp === 2) return pass(`/proc/${f.pid}/status Seccomp: 2 (filter${n})`);
      if (s.seccomp === 1) return pass(`/proc/${f.pid}/status Seccomp: 1 (strict)`);
      return warn(`/proc/${f.pid}/status Seccomp: 0 (no filter)`);
    },
  },
  {
    id: '5.24',
    idCurrent: '5.25',
    title: 'Ensure that cgroup usage is confirmed',
    run(f, h) {
      const ctrls = Object.keys(f.cgroup.paths);
      if (!ctrls.length) return note(`/proc/${f.pid}/cgroup names no memory, cpu or pids cgroup`);
      const shared = ctrls.filter((c) => f.cgroup.paths[c] === '/' || f.cgroup.paths[c] === h.cgroupPaths[c]);
      const where = [...new Set(ctrls.map((c) => f.cgroup.paths[c]))].join(', ');
      return shared.length ? warn(`in the host's own cgroup for ${shared.join(',')} (${where})`) : pass(`own cgroup: ${where}`);
    },
  },
  {
    id: '5.25',
    idCurrent: '5.26',
    title: 'Ensure that the container is restricted from acquiring additional privileges',
    run(f) {
      return f.status.noNewPrivs ? pass(`/proc/${f.pid}/status NoNewPrivs: 1`) : warn(`/proc/${f.pid}/status NoNewPrivs: 0 (setuid binaries and file capabilities work)`);
    },
  },
  {
    id: '5.28',
    idCurrent: '5.29',
    title: 'Ensure that the PIDs cgroup limit is used',
    run(f) {
      const p = f.cgroup.pids;
      if (!p) return note('no pids controller for this process');
      return unlimited(p.value) ? warn(`${p.file} = ${p.value} (a fork bomb reaches the host's limit)`) : pass(`${p.file} = ${p.value}`);
    },
  },
  portCheck('5.13', '5.14', 'Ensure that incoming container traffic is bound to a specific host interface', (m) => m.hostIP === '', ': every host address, the outside included (publish as -p 127.0.0.1:PORT:PORT)'),
  {
    id: '5.30',
    idCurrent: '5.31',
    title: "Ensure that the host's user namespaces are not shared",
    run(f, h) {
      const map = f.uidMap.map((m) => `${m.inside} ${m.outside} ${m.count}`).join('; ');
      const mine = f.ns.user;
      if (mine && mine === h.ns.user) return warn(`host user namespace (uid_map ${map || '?'}): container root is host root`);
      return pass(`own user namespace ${mine ?? '?'}: /proc/${f.pid}/uid_map ${map}`);
    },
  },
  {
    id: '5.31',
    idCurrent: '5.32',
    title: 'Ensure that the Docker socket is not mounted inside any containers',
    run(f, h) {
      // only binds of a host filesystem: a tmpfs the container names docker.sock reaches nothing
      const socks = hostBinds(f.mounts, h.mounts).filter((b) => RUNTIME_SOCKET.test(base(b.hostPath)) || RUNTIME_SOCKET.test(base(b.mount.mountPoint)));
      if (socks.length) return warn(socks.map((b) => `host ${b.hostPath} on ${b.mount.mountPoint}`).join('; '));
      return pass('no container engine socket is mounted');
    },
  },
];

/** The DNAT rules that lead to this process's addresses: its published ports, as the kernel has them. */
function published(f: ProcessFacts, h: HostView): DnatRule[] | undefined {
  if (!h.dnat) return undefined;
  return h.dnat.filter((r) => f.addresses.includes(r.toAddr));
}

/** A check of the process's published ports: WARN lists the rules `bad` picks, PASS lists them all. */
function portCheck(id: string, idCurrent: string, title: string, bad: (m: DnatRule) => boolean, why: string): Check<ProcessFacts> {
  return {
    id,
    idCurrent,
    title,
    run(f, h) {
      const ms = published(f, h);
      if (!ms) return note('the nat table could not be read (iptables-save)');
      const hits = ms.filter(bad);
      if (hits.length) return warn(hits.map(fmt).join('; ') + why);
      return pass(ms.length ? ms.map(fmt).join('; ') : 'no port of the host is forwarded to it (nat table)');
    },
  };
}

const fmt = (m: DnatRule) => `${m.hostIP || '0.0.0.0'}:${m.hostPort} -> ${m.toAddr}:${m.toPort}/${m.protocol}`;

function base(p: string): string {
  return p.slice(p.lastIndexOf('/') + 1);
}
