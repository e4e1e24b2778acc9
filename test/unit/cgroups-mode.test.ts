import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { detectLayout, parseMountInfo, parseProcCgroup, procCgroupPathFor } from '../../src/controls/cgroups/mode.js';

const fixture = (name: string): string => readFileSync(join(__dirname, 'fixtures/cgroups', name), 'utf8');
const V2_CONTROLLERS = 'cpuset cpu io memory hugetlb pids rdma misc\n';

describe('cgroup mode detection from mountinfo', () => {
  it('reads this machine\'s hybrid layout: v1 controllers, cgroup2 holding only hugetlb', () => {
    const l = detectLayout(fixture('hybrid.mountinfo'), 'hugetlb\n');
    expect(l.mode).toBe('hybrid');
    expect(l.controllers['memory']?.mountPoint).toBe('/sys/fs/cgroup/memory');
    expect(l.controllers['memory']?.version).toBe(1);
    expect(l.controllers['cpu']?.mountPoint).toBe('/sys/fs/cgroup/cpu');
    expect(l.controllers['cpuacct']?.mountPoint).toBe('/sys/fs/cgroup/cpuacct');
    // hugetlb has no v1 mount here, so it is driven through the unified hierarchy
    expect(l.controllers['hugetlb']?.version).toBe(2);
    expect(l.controllers['hugetlb']?.mountPoint).toBe('/sys/fs/cgroup/unified');
    expect(l.controllers['io']).toBeUndefined();
    expect(l.unified?.mountPoint).toBe('/sys/fs/cgroup/unified');
    // name=systemd is a hierarchy without controllers
    expect(l.v1.find((h) => h.options.includes('name=systemd'))?.controllers).toEqual([]);
  });

  it('reads a pure v2 layout', () => {
    const l = detectLayout(fixture('v2.mountinfo'), V2_CONTROLLERS);
    expect(l.mode).toBe('v2');
    expect(l.v1).toEqual([]);
    for (const c of ['cpu', 'cpuset', 'io', 'memory', 'pids', 'hugetlb']) expect(l.controllers[c]?.mountPoint).toBe('/sys/fs/cgroup');
    expect(l.controllers['freezer']).toBeUndefined();
  });

  it('reads a pure v1 layout with co-mounted controllers', () => {
    const l = detectLayout(fixture('v1.mountinfo'), '');
    expect(l.mode).toBe('v1');
    expect(l.unified).toBeUndefined();
    expect(l.controllers['cpu']).toBe(l.controllers['cpuacct']);
    expect(l.controllers['cpu']?.mountPoint).toBe('/sys/fs/cgroup/cpu,cpuacct');
    expect(l.controllers['cpu']?.options).toEqual(['cpu', 'cpuacct']);
    // clone_children is a mount option, not a controller
    expect(l.controllers['cpuset']?.controllers).toEqual(['cpuset']);
    expect(l.controllers['net_prio']?.mountPoint).toBe('/sys/fs/cgroup/net_cls,net_prio');
  });

  it('treats systemd\'s name=systemd + full cgroup2 as v2 (no v1 controllers)', () => {
    const text = `40 31 0:37 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,name=systemd\n41 31 0:38 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n`;
    const l = detectLayout(text, V2_CONTROLLERS);
    expect(l.mode).toBe('v2');
    expect(l.controllers['memory']?.mountPoint).toBe('/sys/fs/cgroup/unified');
  });

  it('prefers the mount showing the hierarchy root when one is mounted twice', () => {
    const text = `50 1 0:30 /docker/abc /mnt/x rw - cgroup2 cgroup2 rw\n51 1 0:30 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n`;
    expect(detectLayout(text, 'pids').unified?.mountPoint).toBe('/sys/fs/cgroup');
  });

  it('fails clearly without any cgroup mount', () => {
    expect(() => detectLayout('22 28 0:21 / /sys rw - sysfs sysfs rw\n', '')).toThrow(/no cgroup filesystem/);
  });

  it('unescapes mountinfo octal escapes', () => {
    const [e] = parseMountInfo('1 2 0:3 / /mnt/a\\040b rw - tmpfs tmpfs rw\n');
    expect(e?.mountPoint).toBe('/mnt/a b');
  });

  it('finds the own cgroup path per hierarchy in /proc/self/cgroup', () => {
    const l = detectLayout(fixture('hybrid.mountinfo'), 'hugetlb');
    const lines = parseProcCgroup('9:name=systemd:/\n4:memory:/process_api/b03\n1:cpu:/\n0::/user.slice\n');
    expect(procCgroupPathFor(l.controllers['memory']!, lines)).toBe('/process_api/b03');
    expect(procCgroupPathFor(l.unified!, lines)).toBe('/user.slice');
  });
});
