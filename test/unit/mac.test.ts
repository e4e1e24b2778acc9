import { describe, expect, it } from 'vitest';
import { APPARMOR_DEFAULT, appArmorPolicy, applyMacSecurityOpt, control, setAppArmorDefault } from '../../src/controls/mac.js';
import { PRIVILEGED_ANNOTATION } from '../../src/controls/privileged.js';
import type { ChildStep, ParentStep } from '../../src/plan/types.js';
import { baseSpec, ctxFor } from './privileges-fixture.js';

const withLsms = (spec = baseSpec(), lsms: string[]) => {
  const c = ctxFor(spec);
  c.host.lsms = lsms;
  return c;
};

describe('AppArmor and SELinux options', () => {
  it('are refused with the LSM list when the LSM is not active (this host: no apparmor, no selinux)', () => {
    const lsms = ['lockdown', 'capability', 'landlock', 'bpf'];
    expect(() => applyMacSecurityOpt(baseSpec(), 'apparmor', 'tsrun-default', 'apparmor=tsrun-default', lsms)).toThrow(/--security-opt apparmor=tsrun-default: AppArmor is not active on this kernel \(LSMs: lockdown,capability,landlock,bpf\)/);
    expect(() => applyMacSecurityOpt(baseSpec(), 'label', 'level:s0:c1,c2', 'label=level:s0:c1,c2', lsms)).toThrow(/SELinux is not active on this kernel \(LSMs: lockdown/);
    expect(() => applyMacSecurityOpt(baseSpec(), 'apparmor', 'x', 'apparmor=x', [])).toThrow(/none listed: is securityfs mounted/);
  });
  it('bundles: process.apparmorProfile, process.selinuxLabel and linux.mountLabel are refused, not ignored, without the LSM', () => {
    const lsms = ['capability', 'landlock'];
    const a = baseSpec();
    a.process.apparmorProfile = 'docker-default';
    expect(() => control.validate!(withLsms(a, lsms))).toThrow(/process.apparmorProfile "docker-default": AppArmor is not active/);
    const s = baseSpec();
    s.process.selinuxLabel = 'system_u:system_r:container_t:s0:c1,c2';
    expect(() => control.validate!(withLsms(s, lsms))).toThrow(/process.selinuxLabel .*SELinux is not active/);
    const m = baseSpec();
    m.linux.mountLabel = 'system_u:object_r:container_file_t:s0:c1,c2';
    expect(() => control.validate!(withLsms(m, lsms))).toThrow(/linux.mountLabel .*SELinux is not active/);
    // "unconfined" asks for nothing
    const u = baseSpec();
    u.process.apparmorProfile = 'unconfined';
    expect(() => control.validate!(withLsms(u, lsms))).not.toThrow();
  });
  it('apparmor=PROFILE sets process.apparmorProfile; the default applies only where AppArmor is active', () => {
    const s = baseSpec();
    applyMacSecurityOpt(s, 'apparmor', 'my-profile', 'apparmor=my-profile', ['apparmor']);
    expect(s.process.apparmorProfile).toBe('my-profile');
    const d = baseSpec();
    setAppArmorDefault(d, ['capability']);
    expect(d.process.apparmorProfile).toBeUndefined();
    setAppArmorDefault(d, ['capability', 'apparmor']);
    expect(d.process.apparmorProfile).toBe(APPARMOR_DEFAULT);
  });
  it('plans the load of the built-in profile and the exec label; unconfined and --privileged plan nothing', () => {
    const s = baseSpec();
    s.process.apparmorProfile = APPARMOR_DEFAULT;
    const steps = control.steps(withLsms(s, ['apparmor']));
    expect((steps[0] as ParentStep).action).toBe('apparmor-load');
    expect(steps[1] as ChildStep).toMatchObject({ op: 'LSM_EXEC', ints: [0n], strs: [APPARMOR_DEFAULT], phase: 'system' });
    const own = baseSpec();
    own.process.apparmorProfile = 'lab7';
    expect(control.steps(withLsms(own, ['apparmor'])).map((x) => x.where)).toEqual(['child']);
    s.process.apparmorProfile = 'unconfined';
    expect(control.steps(withLsms(s, ['apparmor']))).toEqual([]);
    const p = baseSpec();
    p.process.apparmorProfile = APPARMOR_DEFAULT;
    p.annotations = { [PRIVILEGED_ANNOTATION]: 'true' };
    expect(control.steps(withLsms(p, ['apparmor']))).toEqual([]);
  });
  it('the built-in policy denies mount and the kernel knobs, by name', () => {
    const pol = appArmorPolicy();
    expect(pol).toMatch(/profile tsrun-default flags=\(attach_disconnected,mediate_deleted\)/);
    for (const rule of ['deny mount,', 'deny /proc/sysrq-trigger rwklx,', 'deny /sys/kernel/security/** rwklx,']) expect(pol).toContain(rule);
  });
});

describe('SELinux labels (SELinux active)', () => {
  const SE = ['capability', 'selinux'];
  it('the default is container_t with a random MCS pair, the same pair on the mount label', async () => {
    const { setSelinuxDefault } = await import('../../src/controls/mac.js');
    const s = baseSpec();
    setSelinuxDefault(s, ['capability']);
    expect(s.process.selinuxLabel).toBeUndefined();
    setSelinuxDefault(s, SE);
    const m = /^system_u:system_r:container_t:(s0:c(\d+),c(\d+))$/.exec(s.process.selinuxLabel!);
    expect(m).not.toBeNull();
    expect(Number(m![2])).toBeLessThan(Number(m![3]));
    expect(s.linux.mountLabel).toBe(`system_u:object_r:container_file_t:${m![1]}`);
  });
  it('randomMcsLevel: two different categories in c0..c1023, lower first', async () => {
    const { randomMcsLevel } = await import('../../src/controls/mac.js');
    expect(randomMcsLevel(() => 0)).toBe('s0:c0,c1');
    expect(randomMcsLevel(() => 0.9999)).toBe('s0:c1022,c1023');
    const seq = [0.5, 0.5];
    expect(randomMcsLevel(() => seq.shift()!)).toBe('s0:c511,c512');
  });
  it('label=type/level/user/role/filetype change their field; disable removes both labels', () => {
    const s = baseSpec();
    applyMacSecurityOpt(s, 'label', 'level:s0:c1,c2', 'label=level:s0:c1,c2', SE);
    expect(s.process.selinuxLabel).toBe('system_u:system_r:container_t:s0:c1,c2');
    expect(s.linux.mountLabel).toBe('system_u:object_r:container_file_t:s0:c1,c2');
    applyMacSecurityOpt(s, 'label', 'type:spc_t', 'label=type:spc_t', SE);
    applyMacSecurityOpt(s, 'label', 'user:u', 'label=user:u', SE);
    applyMacSecurityOpt(s, 'label', 'role:r', 'label=role:r', SE);
    applyMacSecurityOpt(s, 'label', 'filetype:my_file_t', 'label=filetype:my_file_t', SE);
    expect(s.process.selinuxLabel).toBe('u:r:spc_t:s0:c1,c2');
    expect(s.linux.mountLabel).toBe('system_u:object_r:my_file_t:s0:c1,c2');
    applyMacSecurityOpt(s, 'label', 'disable', 'label=disable', SE);
    expect(s.process.selinuxLabel).toBeUndefined();
    expect(s.linux.mountLabel).toBeUndefined();
    expect(() => applyMacSecurityOpt(s, 'label', 'colour:red', 'label=colour:red', SE)).toThrow(/expected label=user:U, role:R, type:T, level:L, filetype:T or disable/);
  });
  it('plans the exec label, and context= on tmpfs and the overlay root only', async () => {
    const { withMountLabel } = await import('../../src/controls/mac.js');
    const s = baseSpec();
    s.process.selinuxLabel = 'system_u:system_r:container_t:s0:c1,c2';
    s.linux.mountLabel = 'system_u:object_r:container_file_t:s0:c1,c2';
    expect(control.steps(withLsms(s, SE))).toEqual([expect.objectContaining({ op: 'LSM_EXEC', ints: [1n], strs: [s.process.selinuxLabel], phase: 'system' })]);
    expect(withMountLabel(s, 'tmpfs', 'mode=755')).toBe('mode=755,context="system_u:object_r:container_file_t:s0:c1,c2"');
    expect(withMountLabel(s, 'overlay', 'lowerdir=/a')).toBe('lowerdir=/a,context="system_u:object_r:container_file_t:s0:c1,c2"');
    expect(withMountLabel(s, 'proc', '')).toBe('');
    expect(() => control.validate!(withLsms(s, SE))).not.toThrow();
    s.process.selinuxLabel = 'container_t';
    expect(() => control.validate!(withLsms(s, SE))).toThrow(/process.selinuxLabel "container_t": expected user:role:type:level/);
  });
});

describe('volume relabelling (:z/:Z)', () => {
  const SE = ['capability', 'selinux'];
  const vol = (source: string, o: string) => ({ destination: '/data', type: 'bind', source, options: ['rbind', 'rprivate', o] });
  it('plans chcon to the shared s0 (:z) or the container\'s pair (:Z), before the container starts', () => {
    const s = baseSpec();
    s.linux.mountLabel = 'system_u:object_r:container_file_t:s0:c3,c4';
    s.mounts = [vol('/srv/data/a', 'z'), vol('/srv/data/b', 'Z')];
    const steps = control.steps(withLsms(s, SE)) as ParentStep[];
    expect(steps.slice(0, 2).map((x) => [x.phase, (x as any).path, (x as any).label])).toEqual([
      ['prepare', '/srv/data/a', 'system_u:object_r:container_file_t:s0'],
      ['prepare', '/srv/data/b', 'system_u:object_r:container_file_t:s0:c3,c4'],
    ]);
  });
  it('refuses system directories and kernels without SELinux', () => {
    const s = baseSpec();
    s.mounts = [vol('/etc', 'Z')];
    expect(() => control.validate!(withLsms(s, SE))).toThrow(/mounts \/data: refusing to relabel \/etc \(:Z\): it is a system directory/);
    expect(() => control.validate!(withLsms(s, ['capability']))).toThrow(/option Z relabels for SELinux, which is not active on this kernel/);
  });
  it('--privileged with the default container_t label runs unlabelled, as docker', () => {
    const s = baseSpec();
    s.process.selinuxLabel = 'system_u:system_r:container_t:s0:c1,c2';
    s.annotations = { [PRIVILEGED_ANNOTATION]: 'true' };
    expect(control.steps(withLsms(s, SE))).toEqual([]);
  });
});
