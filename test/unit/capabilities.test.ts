import { describe, expect, it } from 'vitest';
import {
  ALL_CAPS,
  ALL_MASK,
  CAPABILITIES,
  DOCKER_DEFAULT_CAPS,
  capMask,
  capabilityReport,
  combineCaps,
  computeMasks,
  control,
  flags,
  maskNames,
  normalizeCap,
  trimAllToHost,
} from '../../src/controls/capabilities.js';
import { SpecError, UsageError } from '../../src/errors.js';
import type { ChildStep } from '../../src/plan/types.js';
import { HOST_CAPEFF, baseSpec, ctxFor } from './privileges-fixture.js';
import { capsFor } from '../../src/controls/capabilities.js';

function withCaps(names: string[]) {
  const s = baseSpec();
  s.process.capabilities = capsFor(names);
  return s;
}

const flag = (name: string) => flags.find((f) => f.syntax.startsWith(name))!;
const env = { readImageFile: () => undefined, ncpu: 2 };

describe('capability names', () => {
  it('knows all 41 capabilities of Linux 6.x with their bit numbers', () => {
    expect(CAPABILITIES).toHaveLength(41);
    CAPABILITIES.forEach((c, i) => expect(c.bit).toBe(i));
    expect(ALL_MASK).toBe(0x1ffffffffffn);
    expect(capMask(['CAP_SYS_ADMIN'], 'f')).toBe(1n << 21n);
    expect(capMask(['CAP_CHECKPOINT_RESTORE'], 'f')).toBe(1n << 40n);
    for (const c of CAPABILITIES) expect(c.reason.length).toBeGreaterThan(10);
  });

  it('accepts names with or without CAP_, in any case, and ALL', () => {
    expect(normalizeCap('chown', '--cap-add')).toBe('CAP_CHOWN');
    expect(normalizeCap('CAP_net_raw', '--cap-add')).toBe('CAP_NET_RAW');
    expect(normalizeCap('all', '--cap-add')).toBe('ALL');
  });

  it('rejects an unknown name, naming the flag and the name', () => {
    expect(() => normalizeCap('SYS_FOO', '--cap-add')).toThrow(UsageError);
    expect(() => normalizeCap('SYS_FOO', '--cap-add')).toThrow(/--cap-add: unknown capability "SYS_FOO"/);
    expect(() => capMask(['CAP_NOPE'], 'process.capabilities.bounding')).toThrow(SpecError);
    expect(() => capMask(['CAP_CHOWN', 'CAP_NOPE'], 'process.capabilities.bounding')).toThrow(/process\.capabilities\.bounding\[1\]/);
  });
});

describe('docker --cap-add/--cap-drop rules', () => {
  it('defaults to docker\'s 14', () => {
    expect(DOCKER_DEFAULT_CAPS).toHaveLength(14);
    expect(combineCaps(DOCKER_DEFAULT_CAPS, [], [])).toHaveLength(14);
    expect(capMask(DOCKER_DEFAULT_CAPS, 'f')).toBe(0xa80425fbn);
  });
  it('drops and adds', () => {
    const r = combineCaps(DOCKER_DEFAULT_CAPS, ['SYS_ADMIN'], ['NET_RAW', 'cap_mknod']);
    expect(r).toContain('CAP_SYS_ADMIN');
    expect(r).not.toContain('CAP_NET_RAW');
    expect(r).not.toContain('CAP_MKNOD');
    expect(r).toHaveLength(13);
  });
  it('an add wins over a drop of the same capability', () => {
    expect(combineCaps(DOCKER_DEFAULT_CAPS, ['CHOWN'], ['CHOWN'])).toContain('CAP_CHOWN');
  });
  it('--cap-drop ALL keeps only the added ones', () => {
    expect(combineCaps(DOCKER_DEFAULT_CAPS, ['NET_BIND_SERVICE'], ['ALL'])).toEqual(['CAP_NET_BIND_SERVICE']);
    expect(combineCaps(DOCKER_DEFAULT_CAPS, [], ['ALL'])).toEqual([]);
  });
  it('--cap-add ALL keeps all but the dropped ones', () => {
    const r = combineCaps(DOCKER_DEFAULT_CAPS, ['ALL'], ['SYS_MODULE']);
    expect(r).toHaveLength(40);
    expect(r).not.toContain('CAP_SYS_MODULE');
  });
  it('flag rows fill process.capabilities whatever order they run in', () => {
    const a = baseSpec();
    flag('--cap-add').apply!(a, ['SYS_PTRACE'], env);
    flag('--cap-drop').apply!(a, ['ALL'], env);
    const b = baseSpec();
    flag('--cap-drop').apply!(b, ['ALL'], env);
    flag('--cap-add').apply!(b, ['SYS_PTRACE'], env);
    expect(a.process.capabilities).toEqual(b.process.capabilities);
    expect(a.process.capabilities).toEqual({
      bounding: ['CAP_SYS_PTRACE'],
      effective: ['CAP_SYS_PTRACE'],
      permitted: ['CAP_SYS_PTRACE'],
      inheritable: [],
      ambient: [],
    });
    expect(() => flag('--cap-add').apply!(baseSpec(), ['BOGUS'], env)).toThrow(/--cap-add: unknown capability "BOGUS"/);
  });
});

describe('masks and steps', () => {
  it('emits keepcaps and bounding in phase user, capset in phase caps', () => {
    const steps = control.steps(ctxFor(baseSpec())) as ChildStep[];
    expect(steps.map((s) => [s.phase, s.op])).toEqual([
      ['user', 'KEEPCAPS'],
      ['user', 'CAPBSET'],
      ['caps', 'CAPSET'],
    ]);
    const def = capMask(DOCKER_DEFAULT_CAPS, 'f');
    expect(steps[1]!.ints).toEqual([def]);
    expect(steps[2]!.ints).toEqual([def, def, 0n, 0n]);
    expect(steps[1]!.text).toContain('SYS_ADMIN');
    expect(steps[1]!.text).not.toContain('CHOWN');
    for (const s of steps) expect(s.why.length).toBeGreaterThan(10);
  });

  it('refuses a capability tsrun does not hold, outside a user namespace', () => {
    const s = baseSpec();
    flag('--cap-add').apply!(s, ['SYS_RESOURCE'], env);
    expect(() => control.validate!(ctxFor(s))).toThrow(/CAP_SYS_RESOURCE requested but tsrun itself does not hold it/);
  });

  it('plans without judging when the planner itself has no CAP_SYS_ADMIN (explain as a user)', () => {
    const s = baseSpec();
    flag('--cap-add').apply!(s, ['SYS_RESOURCE'], env);
    expect(computeMasks(s, 0n).bounding & (1n << 24n)).toBe(1n << 24n);
  });

  it('grants it inside a user namespace, where the child holds every capability', () => {
    const s = baseSpec();
    s.linux.namespaces.push({ type: 'user' });
    flag('--cap-add').apply!(s, ['SYS_RESOURCE'], env);
    expect(computeMasks(s, HOST_CAPEFF).bounding & (1n << 24n)).toBe(1n << 24n);
  });

  it('trims ALL (--privileged, --cap-add ALL) to what the host has, in the spec itself', () => {
    const s = baseSpec();
    flag('--cap-add').apply!(s, ['ALL'], env);
    // as asked, ALL is a capability tsrun lacks: refused, never dropped silently
    expect(() => computeMasks(s, HOST_CAPEFF)).toThrow(/CAP_SYS_RESOURCE requested but tsrun itself does not hold it/);
    expect(trimAllToHost(s, { capEff: HOST_CAPEFF })).toEqual(['CAP_SYS_RESOURCE']);
    // what inspect and the state show is what the container gets
    expect(s.process.capabilities!.bounding).not.toContain('CAP_SYS_RESOURCE');
    expect(s.process.capabilities!.bounding).toHaveLength(40);
    expect(computeMasks(s, HOST_CAPEFF).bounding).toBe(HOST_CAPEFF);
    // the bounding set counts too: a capability in CapEff but not in CapBnd is not given
    const t = baseSpec();
    flag('--cap-add').apply!(t, ['ALL'], env);
    const bnd = ALL_MASK & ~(1n << 39n);
    expect(trimAllToHost(t, { capEff: ALL_MASK, capBnd: bnd })).toEqual(['CAP_BPF']);
    expect(() => computeMasks(withCaps(['CAP_BPF']), ALL_MASK, bnd)).toThrow(/CAP_BPF requested .*CapBnd 0000017fffffffff\)/);
  });

  it('a request short of ALL is not trimmed, and planning as a user trims nothing', () => {
    const s = baseSpec();
    flag('--cap-add').apply!(s, ['SYS_ADMIN'], env);
    const before = structuredClone(s.process.capabilities);
    expect(trimAllToHost(s, { capEff: HOST_CAPEFF })).toEqual([]);
    expect(s.process.capabilities).toEqual(before);
    const u = baseSpec();
    flag('--cap-add').apply!(u, ['ALL'], env);
    expect(trimAllToHost(u, { capEff: 0n })).toEqual([]);
    expect(u.process.capabilities!.bounding).toHaveLength(41);
  });

  it('checks the capset rules of the spec', () => {
    const s = baseSpec();
    s.process.capabilities = { bounding: ['CAP_CHOWN'], permitted: ['CAP_CHOWN'], effective: ['CAP_CHOWN', 'CAP_KILL'] };
    expect(() => computeMasks(s, HOST_CAPEFF)).toThrow(/process\.capabilities\.effective: CAP_KILL not in permitted/);
    s.process.capabilities = { bounding: ['CAP_CHOWN'], permitted: ['CAP_CHOWN'], effective: [], ambient: ['CAP_CHOWN'] };
    // not inheritable: cannot be raised, dropped as runc does (runc spec's own default bundle relies on it)
    expect(computeMasks(s, HOST_CAPEFF)).toMatchObject({ ambient: 0n, ignoredAmbient: 1n });
    s.process.capabilities.inheritable = ['CAP_CHOWN'];
    expect(computeMasks(s, HOST_CAPEFF).ambient).toBe(1n);
  });

  it('explains every capability, kept or dropped', () => {
    const lines = capabilityReport(baseSpec(), HOST_CAPEFF);
    expect(lines).toHaveLength(41);
    expect(lines.filter((l) => l.startsWith('keep'))).toHaveLength(14);
    expect(lines.find((l) => l.includes('CAP_SYS_ADMIN'))).toMatch(/^drop .*mount/);
    expect(ALL_CAPS).toHaveLength(41);
  });
});
