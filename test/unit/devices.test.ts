import { describe, expect, it } from 'vitest';
import { DEFAULT_DEVICE_RULES, applyDefaultDevices, deviceCgroupV1Writes, withDefaultDeviceRules, control, flags, makedev, parseDeviceFlag, setDeviceStat, splitDev, statHostDevice } from '../../src/controls/devices.js';
import type { ChildStep } from '../../src/plan/types.js';
import { baseSpec, ctxFor } from './privileges-fixture.js';

const env = { readImageFile: () => undefined, ncpu: 1 };

describe('--device', () => {
  it('parses HOST[:CONTAINER][:rwm] as docker does', () => {
    expect(parseDeviceFlag('/dev/fuse')).toEqual({ host: '/dev/fuse', container: '/dev/fuse', access: 'rwm' });
    expect(parseDeviceFlag('/dev/fuse:r')).toEqual({ host: '/dev/fuse', container: '/dev/fuse', access: 'r' });
    expect(parseDeviceFlag('/dev/fuse:/dev/f2:rw')).toEqual({ host: '/dev/fuse', container: '/dev/f2', access: 'rw' });
    expect(() => parseDeviceFlag('/dev/fuse:/dev/f2:rx')).toThrow(/permissions "rx"/);
    expect(() => parseDeviceFlag('dev/fuse')).toThrow(/must be absolute/);
    expect(() => parseDeviceFlag('/dev/fuse:/dev/../etc/x')).toThrow(/\.\./);
  });

  it('encodes dev_t like glibc and decodes it back', () => {
    expect(makedev(1, 3)).toBe(0x103n);
    expect(makedev(259, 70000)).toBe(splitDevInverse(259, 70000));
    expect(splitDev(makedev(4095 + 7, 300000))).toEqual({ major: 4102, minor: 300000 });
  });

  it('a missing device is a clear error, before anything exists', () => {
    expect(() => statHostDevice('/dev/does-not-exist')).toThrow(/--device \/dev\/does-not-exist: ENOENT/);
    expect(() => statHostDevice('/etc/hostname')).toThrow(/not a character or block device/);
    expect(statHostDevice('/dev/null')).toMatchObject({ type: 'c', major: 1, minor: 3 });
  });

  it('adds the node and an allow rule after the defaults', () => {
    setDeviceStat(() => ({ type: 'c', major: 10, minor: 229, mode: 0o20600 }));
    const s = baseSpec();
    applyDefaultDevices(s);
    flags[0]!.apply!(s, ['/dev/fuse:/dev/fuse:rw'], env);
    expect(s.linux.devices).toEqual([{ type: 'c', path: '/dev/fuse', major: 10, minor: 229, fileMode: 0o600, uid: 0, gid: 0 }]);
    expect(s.linux.resources!.devices!.length).toBe(DEFAULT_DEVICE_RULES.length + 1);
    expect(s.linux.resources!.devices![0]).toEqual({ allow: false, access: 'rwm' });
    expect(s.linux.resources!.devices!.at(-1)).toEqual({ allow: true, type: 'c', major: 10, minor: 229, access: 'rw' });
  });

  it('mknods the node under the new root, or binds the host node in a user namespace', () => {
    setDeviceStat(() => ({ type: 'c', major: 10, minor: 229, mode: 0o20600 }));
    const s = baseSpec();
    flags[0]!.apply!(s, ['/dev/fuse:/dev/misc/f'], env);
    const steps = control.steps(ctxFor(s)) as ChildStep[];
    expect(steps.map((x) => [x.phase, x.op, x.strs, x.ints])).toEqual([
      ['mounts', 'MKDIR', ['/run/tsrun/test/rootfs/dev/misc'], [0o755n]],
      ['mounts', 'MKNOD', ['/run/tsrun/test/rootfs/dev/misc/f'], [0o020600n, makedev(10, 229), 0n, 0n]],
    ]);
    s.linux.namespaces.push({ type: 'user' });
    const u = control.steps(ctxFor(s)) as ChildStep[];
    expect(u.map((x) => x.op)).toEqual(['MKDIR', 'MKFILE', 'MOUNT']);
    expect(u[2]!.strs).toEqual(['/dev/fuse', '/run/tsrun/test/rootfs/dev/misc/f', '', '']);
  });

  it('validates a bundle\'s devices', () => {
    const s = baseSpec();
    s.linux.devices = [{ type: 'c', path: 'dev/x', major: 1, minor: 1 }];
    expect(() => control.validate!(ctxFor(s))).toThrow(/linux\.devices\[0\]\.path/);
    s.linux.devices = [{ type: 'c', path: '/dev/x' }];
    expect(() => control.validate!(ctxFor(s))).toThrow(/major and minor/);
  });
});

describe('device cgroup v1', () => {
  it('turns the rules into devices.deny/devices.allow writes', () => {
    expect(deviceCgroupV1Writes(DEFAULT_DEVICE_RULES).slice(0, 4)).toEqual([
      { file: 'devices.deny', value: 'a' },
      { file: 'devices.allow', value: 'c *:* m' },
      { file: 'devices.allow', value: 'b *:* m' },
      { file: 'devices.allow', value: 'c 1:3 rwm' },
    ]);
    expect(deviceCgroupV1Writes([{ allow: true, type: 'c', major: 136, minor: null, access: 'rwm' }])).toEqual([{ file: 'devices.allow', value: 'c 136:* rwm' }]);
    expect(deviceCgroupV1Writes([{ allow: true, access: 'rwm' }])).toEqual([{ file: 'devices.allow', value: 'a' }]);
  });
});

// the same formula written the other way round, from makedev(3)
function splitDevInverse(major: number, minor: number): bigint {
  const M = BigInt(major);
  const m = BigInt(minor);
  return (M << 8n) & 0xfff00n | (M >> 12n) << 44n | (m & 0xffn) | (m >> 8n) << 20n;
}

describe('device cgroup rules of bundles from engines', () => {
  it('a lone "deny all" still lets the default devices open (OCI "Default Devices"; podman and containerd send only that rule)', () => {
    const rules = withDefaultDeviceRules([{ allow: false, access: 'rwm' }]);
    expect(rules[0]).toEqual({ allow: false, access: 'rwm' });
    const writes = deviceCgroupV1Writes(rules).map((w) => `${w.file} ${w.value}`);
    expect(writes[0]).toBe('devices.deny a');
    expect(writes).toContain('devices.allow c 1:3 rwm'); // /dev/null
    expect(writes).toContain('devices.allow c 5:2 rwm'); // /dev/ptmx
    expect(writes).toContain('devices.allow c 136:* rwm'); // /dev/pts/*
    expect(writes.some((w) => w.includes(' 8:'))).toBe(false); // no disk
    // tsrun's own specs hold them already: nothing is written twice
    expect(withDefaultDeviceRules(DEFAULT_DEVICE_RULES)).toEqual([...DEFAULT_DEVICE_RULES]);
  });
});
