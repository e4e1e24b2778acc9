// Devices: which device nodes exist in the container and which it may open.
// Two separate kernel mechanisms, both needed:
//  - the node itself (mknod(2) in the container's /dev, or a bind mount of the host's node
//    inside a user namespace, where mknod is refused with EPERM);
//  - the device cgroup (cgroup v1 devices.allow/devices.deny; a BPF_CGROUP_DEVICE program
//    on v2), which decides whether open(2) of a major:minor succeeds at all, whatever nodes
//    a process with CAP_MKNOD creates. Without it, `mknod /tmp/sda b 8 0` gives the host disk.
// This module produces spec.linux.devices (nodes) and spec.linux.resources.devices (rules);
// the cgroups control writes the rules into the device cgroup.
import { readdirSync, lstatSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { BuildContext, ChildStep, Control, Step } from '../plan/types.js';
import type { FlagDef } from '../spec/flag-types.js';
import type { Device, DeviceRule, Spec } from '../spec/types.js';
import { SpecError, UsageError } from '../errors.js';
import { hasUserNamespace } from './userns.js';

/** What every container may use (docker's defaults, minus nothing, plus nothing). */
export const DEFAULT_DEVICE_RULES: readonly DeviceRule[] = [
  { allow: false, access: 'rwm' }, // deny everything, then allow the list below
  { allow: true, type: 'c', major: null, minor: null, access: 'm' }, // mknod of char devices (opening is still denied)
  { allow: true, type: 'b', major: null, minor: null, access: 'm' }, // mknod of block devices
  { allow: true, type: 'c', major: 1, minor: 3, access: 'rwm' }, // /dev/null
  { allow: true, type: 'c', major: 1, minor: 5, access: 'rwm' }, // /dev/zero
  { allow: true, type: 'c', major: 1, minor: 7, access: 'rwm' }, // /dev/full
  { allow: true, type: 'c', major: 1, minor: 8, access: 'rwm' }, // /dev/random
  { allow: true, type: 'c', major: 1, minor: 9, access: 'rwm' }, // /dev/urandom
  { allow: true, type: 'c', major: 5, minor: 0, access: 'rwm' }, // /dev/tty
  { allow: true, type: 'c', major: 5, minor: 1, access: 'rwm' }, // /dev/console
  { allow: true, type: 'c', major: 5, minor: 2, access: 'rwm' }, // /dev/ptmx
  { allow: true, type: 'c', major: 136, minor: null, access: 'rwm' }, // /dev/pts/*
];

export const HOST_PATH_ANNOTATION = 'io.tsrun.device-host-paths';

/** glibc's makedev(3) encoding of dev_t (what mknod(2) takes). */
export function makedev(major: number, minor: number): bigint {
  const M = BigInt(major);
  const m = BigInt(minor);
  return ((M & 0xfffff000n) << 32n) | ((M & 0xfffn) << 8n) | ((m & 0xffffff00n) << 12n) | (m & 0xffn);
}

export function splitDev(rdev: bigint): { major: number; minor: number } {
  return {
    major: Number(((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & 0xfffff000n)),
    minor: Number((rdev & 0xffn) | ((rdev >> 12n) & 0xffffff00n)),
  };
}

export interface HostDevice {
  type: 'c' | 'b';
  major: number;
  minor: number;
  mode: number;
}

export function statHostDevice(path: string, flag = '--device'): HostDevice {
  let st;
  try {
    st = statSync(path, { bigint: true });
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? 'error';
    throw new UsageError(`${flag} ${path}: ${code} (${code === 'ENOENT' ? 'no such device on the host' : (e as Error).message})`, { cause: e });
  }
  const type = st.isCharacterDevice() ? 'c' : st.isBlockDevice() ? 'b' : undefined;
  if (!type) throw new UsageError(`${flag} ${path}: not a character or block device`);
  return { type, ...splitDev(st.rdev), mode: Number(st.mode & 0o7777n) };
}

let statDevice: (path: string) => HostDevice = (p) => statHostDevice(p);
export function setDeviceStat(f: (path: string) => HostDevice): void {
  statDevice = f;
}

export interface DeviceRequest {
  host: string;
  container: string;
  access: string;
}

const ACCESS_RE = /^(?!.*(.).*\1)[rwm]{1,3}$/;

/** `HOST[:CONTAINER][:rwm]` as docker parses it. */
export function parseDeviceFlag(text: string): DeviceRequest {
  const parts = text.split(':');
  let [host, container, access] = parts;
  if (parts.length === 2 && container && ACCESS_RE.test(container)) {
    access = container;
    container = undefined;
  }
  if (parts.length > 3 || !host) throw new UsageError(`--device ${text}: expected HOST[:CONTAINER[:PERMISSIONS]]`);
  container ||= host;
  access ||= 'rwm';
  if (!host.startsWith('/') || !container.startsWith('/')) throw new UsageError(`--device ${text}: paths must be absolute`);
  if (container.split('/').includes('..')) throw new UsageError(`--device ${text}: container path contains ".."`);
  if (!ACCESS_RE.test(access)) throw new UsageError(`--device ${text}: permissions "${access}" must be a combination of r, w, m`);
  return { host, container, access };
}

export function addDevice(spec: Spec, req: DeviceRequest, dev: HostDevice): void {
  const node: Device = { type: dev.type, path: req.container, major: dev.major, minor: dev.minor, fileMode: dev.mode & 0o777, uid: 0, gid: 0 };
  spec.linux.devices = [...(spec.linux.devices ?? []).filter((d) => d.path !== req.container), node];
  const res = (spec.linux.resources ??= {});
  res.devices = [...(res.devices ?? DEFAULT_DEVICE_RULES), { allow: true, type: dev.type, major: dev.major, minor: dev.minor, access: req.access }];
  const hostPaths = JSON.parse(spec.annotations?.[HOST_PATH_ANNOTATION] ?? '{}') as Record<string, string>;
  hostPaths[req.container] = req.host;
  spec.annotations = { ...spec.annotations, [HOST_PATH_ANNOTATION]: JSON.stringify(hostPaths) };
}

/** The device cgroup rules a container built from flags starts with. */
export function applyDefaultDevices(spec: Spec): void {
  const res = (spec.linux.resources ??= {});
  res.devices ??= DEFAULT_DEVICE_RULES.map((r) => ({ ...r }));
}

export const flags: FlagDef[] = [
  {
    syntax: '--device <host[:container][:rwm]>',
    help: 'add a host device to the container and allow it in the device cgroup',
    docker: '--device',
    control: 'devices',
    repeatable: true,
    apply(spec, value) {
      for (const v of (Array.isArray(value) ? value : [value]).map(String)) {
        const req = parseDeviceFlag(v);
        addDevice(spec, req, statDevice(req.host));
      }
    },
  },
];

// Nodes that are not devices of their own for a container: its own devpts, shm, mqueue
// and console come from the rootfs set-up.
const HOST_DEV_SKIP = new Set(['/dev/pts', '/dev/shm', '/dev/mqueue', '/dev/console', '/dev/fd', '/dev/ptmx']);

/** Every char/block device under the host's /dev (--privileged). */
export function hostDevices(root = '/dev'): { path: string; dev: HostDevice }[] {
  const out: { path: string; dev: HostDevice }[] = [];
  const walk = (dir: string) => {
    for (const name of readdirSync(dir)) {
      const p = join(dir, name);
      if (HOST_DEV_SKIP.has(p)) continue;
      const st = lstatSync(p, { bigint: true });
      if (st.isDirectory()) walk(p);
      else if (st.isCharacterDevice() || st.isBlockDevice())
        out.push({ path: p, dev: { type: st.isCharacterDevice() ? 'c' : 'b', ...splitDev(st.rdev), mode: Number(st.mode & 0o7777n) } });
    }
  };
  walk(root);
  return out;
}

const S_IFCHR = 0o020000n;
const S_IFBLK = 0o060000n;
const S_IFIFO = 0o010000n;
const MS_BIND = 0x1000n;

function step(op: ChildStep['op'], ints: bigint[], strs: string[], text: string, why: string): ChildStep {
  return { where: 'child', phase: 'mounts', op, ints, strs, text, why, control: 'devices' };
}

export const control: Control = {
  id: 'devices',
  title: 'Device nodes and the device cgroup',
  ref: 'CIS 5.17 (do not share host devices), docker --device',
  validate(ctx: BuildContext): void {
    (ctx.spec.linux.devices ?? []).forEach((d, i) => {
      const f = `linux.devices[${i}]`;
      if (!d.path?.startsWith('/') || d.path.split('/').includes('..')) throw new SpecError(`${f}.path`, `"${d.path}" must be an absolute path without ".."`);
      if (d.type !== 'c' && d.type !== 'b' && d.type !== 'u' && d.type !== 'p') throw new SpecError(`${f}.type`, `"${String(d.type)}" is not c, b, u or p`);
      if (d.type !== 'p' && (!Number.isInteger(d.major) || !Number.isInteger(d.minor)))
        throw new SpecError(f, 'major and minor numbers are required for c, b and u devices');
      if (d.fileMode !== undefined && (!Number.isInteger(d.fileMode) || d.fileMode < 0 || d.fileMode > 0o7777)) throw new SpecError(`${f}.fileMode`, `${String(d.fileMode)} is not a mode (0 to 07777)`);
      for (const k of ['uid', 'gid'] as const) {
        const v = d[k];
        if (v !== undefined && (!Number.isInteger(v) || v < 0 || v > 0xfffffffe)) throw new SpecError(`${f}.${k}`, `${String(v)} is not a valid id`);
      }
    });
    (ctx.spec.linux.resources?.devices ?? []).forEach((r, i) => {
      if (r.access !== undefined && r.access !== '' && !ACCESS_RE.test(r.access))
        throw new SpecError(`linux.resources.devices[${i}].access`, `"${r.access}" must be a combination of r, w, m`);
    });
  },
  steps(ctx: BuildContext): Step[] {
    const out: Step[] = [];
    const userns = hasUserNamespace(ctx.spec);
    const hostPaths = JSON.parse(ctx.spec.annotations?.[HOST_PATH_ANNOTATION] ?? '{}') as Record<string, string>;
    for (const d of ctx.spec.linux.devices ?? []) {
      const target = `${ctx.rootfs}${d.path}`;
      out.push(step('MKDIR', [0o755n], [dirname(target)], `mkdir -p ${dirname(d.path)}`, `parent directory of ${d.path}`));
      if (userns) {
        // mknod(2) needs CAP_MKNOD in the initial user namespace: bind the host's node.
        const src = hostPaths[d.path] ?? d.path;
        out.push(
          step('MKFILE', [0o600n], [target], `touch ${d.path}`, 'bind-mount target'),
          step('MOUNT', [MS_BIND], [src, target, '', ''], `mount("${src}", "${d.path}", NULL, MS_BIND)`, `device ${d.type} ${d.major}:${d.minor}: mknod is refused in a user namespace, so the host node is bound`),
        );
      } else {
        // config-linux.md: c and u are character devices (u unbuffered, which Linux does
        // not distinguish), b a block device, p a FIFO (no major/minor)
        const [ifmt, ifname] = d.type === 'b' ? [S_IFBLK, 'S_IFBLK'] : d.type === 'p' ? [S_IFIFO, 'S_IFIFO'] : [S_IFCHR, 'S_IFCHR'];
        const perm = d.fileMode ?? 0o666;
        const dev = d.type === 'p' ? 0n : makedev(d.major ?? 0, d.minor ?? 0);
        const uid = d.uid ?? 0;
        const gid = d.gid ?? 0;
        out.push(
          step(
            'MKNOD',
            [ifmt | BigInt(perm & 0o7777), dev, BigInt(uid), BigInt(gid)],
            [target],
            `mknod("${d.path}", ${ifname}|0${perm.toString(8)}, ${d.type === 'p' ? '0' : `makedev(${d.major}, ${d.minor})`}) under umask 0; fchownat(${uid}, ${gid})`,
            d.type === 'p' ? 'FIFO asked for in linux.devices' : `device asked for in linux.devices; the device cgroup allows it`,
          ),
        );
      }
    }
    return out;
  },
};

/**
 * The rules as cgroup v1 writes, in order (Documentation/admin-guide/cgroup-v1/devices.rst):
 * `a` for all, `*` for any major/minor. For the cgroups control's ParentAction 'cgroup' set
 * steps: e.g. devices.deny "a", then devices.allow "c 1:3 rwm" ...
 */
/**
 * The spec's device rules followed by the allow rules for the devices every container gets.
 * The OCI runtime spec (config-linux.md, "Default Devices") has the runtime supply /dev/null,
 * zero, full, random, urandom, tty, console and ptmx whatever the spec lists, and engines rely
 * on the runtime to let them be opened too: podman and containerd send only
 * {allow: false, access: "rwm"} (runc appends its own defaults after the spec's rules). Taken
 * literally, that rule makes `echo > /dev/null` fail with EPERM and a pty impossible.
 */
export function withDefaultDeviceRules(rules: readonly DeviceRule[]): DeviceRule[] {
  const same = (a: DeviceRule, b: DeviceRule) => a.allow === b.allow && (a.type ?? 'a') === (b.type ?? 'a') && (a.major ?? null) === (b.major ?? null) && (a.minor ?? null) === (b.minor ?? null) && (a.access ?? 'rwm') === (b.access ?? 'rwm');
  return [...rules, ...DEFAULT_DEVICE_RULES.filter((d) => d.allow && !rules.some((r) => same(r, d)))];
}

export function deviceCgroupV1Writes(rules: readonly DeviceRule[]): { file: 'devices.allow' | 'devices.deny'; value: string }[] {
  return rules.map((r) => {
    const type = r.type ?? 'a';
    const num = (n: number | null | undefined) => (n === undefined || n === null || n < 0 ? '*' : String(n));
    const access = r.access || 'rwm';
    const value = type === 'a' ? 'a' : `${type} ${num(r.major)}:${num(r.minor)} ${access}`;
    return { file: r.allow ? 'devices.allow' : 'devices.deny', value };
  });
}
