import { describe, expect, it } from 'vitest';
import { control, flags, sysctlNamespace } from '../../src/controls/sysctl.js';
import type { ChildStep } from '../../src/plan/types.js';
import { baseSpec, ctxFor } from './privileges-fixture.js';

const apply = (s: ReturnType<typeof baseSpec>, v: string[]) => flags[0]!.apply!(s, v, { readImageFile: () => undefined, ncpu: 1 });

describe('--sysctl', () => {
  it('classifies namespaced sysctls', () => {
    expect(sysctlNamespace('kernel.shmmax')).toBe('ipc');
    expect(sysctlNamespace('kernel.shm_rmid_forced')).toBe('ipc');
    expect(sysctlNamespace('fs.mqueue.msg_max')).toBe('ipc');
    expect(sysctlNamespace('net.ipv4.ip_forward')).toBe('network');
    expect(sysctlNamespace('kernel.randomize_va_space')).toBeUndefined();
    expect(sysctlNamespace('vm.swappiness')).toBeUndefined();
    expect(sysctlNamespace('kernel.shmmaxx')).toBeUndefined();
  });

  it('writes each value through /proc/sys before the pivot', () => {
    const s = baseSpec();
    apply(s, ['net.ipv4.ip_unprivileged_port_start=0', 'kernel.shmmax=1048576']);
    const c = ctxFor(s);
    control.validate!(c);
    const steps = control.steps(c) as ChildStep[];
    expect(steps.map((x) => [x.phase, x.op, x.strs])).toEqual([
      ['mounts', 'WRITE_FILE', ['/proc/sys/net/ipv4/ip_unprivileged_port_start', '0']],
      ['mounts', 'WRITE_FILE', ['/proc/sys/kernel/shmmax', '1048576']],
    ]);
  });

  it('rejects sysctls that are not namespaced, naming them', () => {
    const s = baseSpec();
    apply(s, ['vm.overcommit_memory=1']);
    expect(() => control.validate!(ctxFor(s))).toThrow(/linux\.sysctl\.vm\.overcommit_memory: vm\.overcommit_memory is not namespaced/);
  });

  it('rejects net.* with the host network and kernel.shm* with the host IPC namespace', () => {
    const s = baseSpec();
    s.linux.namespaces = s.linux.namespaces.filter((n) => n.type !== 'network');
    apply(s, ['net.ipv4.ip_forward=1']);
    expect(() => control.validate!(ctxFor(s))).toThrow(/needs the container's own network namespace/);
    const t = baseSpec();
    t.linux.namespaces = t.linux.namespaces.filter((n) => n.type !== 'ipc');
    apply(t, ['kernel.shmmax=1']);
    expect(() => control.validate!(ctxFor(t))).toThrow(/needs the container's own ipc namespace.*--ipc host/);
  });

  it('rejects malformed input', () => {
    expect(() => apply(baseSpec(), ['kernel.shmmax'])).toThrow(/--sysctl kernel\.shmmax: expected KEY=VALUE/);
    const s = baseSpec();
    s.linux.sysctl = { '../../etc/passwd': 'x' };
    expect(() => control.validate!(ctxFor(s))).toThrow(/is not a sysctl name/);
  });
});
