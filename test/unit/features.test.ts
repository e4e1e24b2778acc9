// `tsrun features` lists exactly what the controls accept: each entry is checked against the
// code that would handle it, and what is left out is checked to be refused.
import { describe, expect, it } from 'vitest';
import { features } from '../../src/runtime/features.js';
import { parseOptions } from '../../src/controls/mounts.js';
import { normalizeCap } from '../../src/controls/capabilities.js';
import { control as namespaces } from '../../src/controls/namespaces.js';
import { actionValue } from '../../src/controls/seccomp/compile.js';
import { ACTIONS } from '../../src/controls/seccomp/profile.js';
import { baseSpec, ctxFor } from './privileges-fixture.js';
import type { NamespaceType } from '../../src/spec/types.js';
import { control as mac } from '../../src/controls/mac.js';

describe('tsrun features', () => {
  const f = features();

  it('every mount option listed is a flag or a propagation tsrun applies itself, not data passed to mount(2)', () => {
    for (const o of f.mountOptions) expect(parseOptions([o]).data, o).toEqual([]);
    expect(parseOptions(['rro']).data).toEqual(['rro']); // recursive read-only: not implemented, so not listed
    expect(f.mountOptions).not.toContain('rro');
  });

  it('every capability listed is one tsrun knows', () => {
    for (const c of f.linux.capabilities) expect(normalizeCap(c, 'test')).toBe(c);
    expect(f.linux.capabilities).toContain('CAP_CHECKPOINT_RESTORE');
  });

  it('every namespace listed is accepted; time, not listed, is refused', () => {
    for (const t of f.linux.namespaces) {
      const s = baseSpec();
      s.linux.namespaces = [{ type: 'mount' }, ...(t === 'mount' ? [] : [{ type: t as NamespaceType }])];
      expect(() => namespaces.validate!(ctxFor(s)), t).not.toThrow();
    }
    const s = baseSpec();
    s.linux.namespaces.push({ type: 'time' });
    expect(() => namespaces.validate!(ctxFor(s))).toThrow(/time namespaces are not supported/);
  });

  it('seccomp actions listed compile; the others are refused', () => {
    for (const a of f.linux.seccomp.actions) expect(() => actionValue(a, undefined)).not.toThrow();
    for (const a of ACTIONS.filter((x) => !f.linux.seccomp.actions.includes(x))) expect(() => actionValue(a, undefined)).toThrow();
  });

  it('AppArmor and SELinux are supported (features.md: compiled in); a kernel without the LSM refuses the label by name', () => {
    expect(f.linux.apparmor.enabled).toBe(true);
    expect(f.linux.selinux.enabled).toBe(true);
    const s = baseSpec();
    s.process.apparmorProfile = 'tsrun-default';
    s.process.selinuxLabel = 'system_u:system_r:container_t:s0:c1,c2';
    const withLsms = { ...ctxFor(s), host: { ...ctxFor(s).host, lsms: ['capability', 'apparmor', 'selinux'] } };
    expect(() => mac.validate!(withLsms)).not.toThrow();
    expect(() => mac.validate!(ctxFor(s))).toThrow(/process.apparmorProfile "tsrun-default": AppArmor is not active on this kernel/);
  });

  it('all six hooks; no systemd cgroup driver, no idmapped mounts: both refused elsewhere', () => {
    expect(f.hooks).toEqual(['prestart', 'createRuntime', 'createContainer', 'startContainer', 'poststart', 'poststop']);
    expect(f.linux.cgroup).toMatchObject({ v1: true, v2: true, systemd: false });
    expect(f.linux.mountExtensions.idmap.enabled).toBe(false);
  });
});
