import { describe, expect, it } from 'vitest';
import { ALL_CAPS } from '../../src/controls/capabilities.js';
import { PRIVILEGED_WARNING, control, flags, setPrivilegedHooks } from '../../src/controls/privileged.js';
import { baseSpec, ctxFor } from './privileges-fixture.js';

describe('--privileged', () => {
  it('turns the controls off and warns on stderr', () => {
    const warnings: string[] = [];
    setPrivilegedHooks({
      warn: (m) => warnings.push(m),
      devices: () => [{ path: '/dev/sda', dev: { type: 'b', major: 8, minor: 0, mode: 0o60660 } }],
    });
    const s = baseSpec();
    s.linux.seccomp = { defaultAction: 'SCMP_ACT_ERRNO' };
    s.linux.maskedPaths = ['/proc/kcore'];
    s.linux.readonlyPaths = ['/proc/sys'];
    flags[0]!.apply!(s, true, { readImageFile: () => undefined, ncpu: 1 });
    expect(s.process.capabilities!.bounding).toEqual(ALL_CAPS);
    expect(s.linux.seccomp).toBeUndefined();
    expect(s.linux.maskedPaths).toEqual([]);
    expect(s.linux.readonlyPaths).toEqual([]);
    expect(s.linux.devices).toEqual([{ type: 'b', path: '/dev/sda', major: 8, minor: 0, fileMode: 0o660, uid: 0, gid: 0 }]);
    expect(s.linux.resources!.devices).toEqual([{ allow: true, access: 'rwm' }]);
    expect(warnings).toEqual([PRIVILEGED_WARNING]);
    expect(() => control.validate!(ctxFor(s))).not.toThrow();
  });

  it('refuses a user namespace, as docker does', () => {
    setPrivilegedHooks({ warn: () => {}, devices: () => [] });
    const s = baseSpec();
    s.linux.namespaces.push({ type: 'user' });
    flags[0]!.apply!(s, true, { readImageFile: () => undefined, ncpu: 1 });
    expect(() => control.validate!(ctxFor(s))).toThrow(/--privileged cannot be used with a user namespace.*--userns host/);
  });
});
