import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { applyLandlockSecurityOpt, BUILTIN, control, FS, GROUPS, LANDLOCK_ANNOTATION, landlockOf, landlockRules, parseLandlockProfile } from '../../src/controls/landlock.js';
import { buildPlan, childSteps } from '../../src/plan/build.js';
import { encodePlan } from '../../src/plan/encode.js';
import { OP } from '../../src/plan/protocol.js';
import type { ChildStep } from '../../src/plan/types.js';
import { baseSpec, ctxFor as baseCtx } from './privileges-fixture.js';

/** A host whose securityfs lists Landlock (this project's kernels have it). */
const ctxFor: typeof baseCtx = (spec, capEff) => {
  const c = baseCtx(spec, capEff);
  c.host.lsms = ['capability', 'landlock'];
  return c;
};

const dir = mkdtempSync(join(tmpdir(), 'tsrun-landlock-unit-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function withRules(rules: unknown, nnp = true) {
  const s = baseSpec();
  s.process.noNewPrivileges = nnp;
  s.annotations = { [LANDLOCK_ANNOTATION]: JSON.stringify(rules) };
  return s;
}

describe('landlock profile', () => {
  it('is canonical: sorted, deduplicated, normalised, one rule per path with the union of its groups', () => {
    const p = parseLandlockProfile({ write: ['/tmp/', '/var/log', '/tmp'], read: ['/'], execute: ['/usr//bin', '/bin'] });
    expect(p).toEqual({ read: ['/'], write: ['/tmp', '/var/log'], execute: ['/bin', '/usr/bin'] });
    const both = landlockRules(parseLandlockProfile({ read: ['/tmp'], write: ['/tmp'] }));
    expect(both).toEqual([{ path: '/tmp', groups: ['read', 'write'], access: GROUPS.read | GROUPS.write }]);
  });
  it('refuses what it cannot mean, naming the key and path', () => {
    expect(() => parseLandlockProfile([])).toThrow(/JSON object/);
    expect(() => parseLandlockProfile({ wrte: ['/tmp'] })).toThrow(/unknown key "wrte"/);
    expect(() => parseLandlockProfile({ read: 'x' })).toThrow(/"read" must be a list/);
    expect(() => parseLandlockProfile({ read: ['tmp'] })).toThrow(/"read": "tmp" is not an absolute path/);
    expect(() => parseLandlockProfile({ read: ['/a/../etc'] })).toThrow(/contains "\.\."/);
    expect(() => parseLandlockProfile({ read: [] })).toThrow(/grants nothing/);
  });
  it('write never grants device creation; execute implies reading the program (execve opens it for reading)', () => {
    expect(GROUPS.write & (FS.MAKE_CHAR | FS.MAKE_BLOCK)).toBe(0n);
    expect(GROUPS.execute).toBe(FS.EXECUTE | FS.READ_FILE);
    expect(GROUPS.read & FS.EXECUTE).toBe(0n);
  });
});

describe('--security-opt landlock', () => {
  it('FILE, builtin and unconfined set or clear the annotation', () => {
    const f = join(dir, 'r.json');
    writeFileSync(f, JSON.stringify({ read: ['/'], write: ['/tmp'] }));
    const s = baseSpec();
    expect(applyLandlockSecurityOpt(s, `landlock=${f}`)).toBe(true);
    expect(JSON.parse(s.annotations![LANDLOCK_ANNOTATION]!)).toEqual({ read: ['/'], write: ['/tmp'], execute: [] });
    applyLandlockSecurityOpt(s, 'landlock=builtin');
    expect(landlockOf(s)).toEqual(BUILTIN);
    applyLandlockSecurityOpt(s, 'landlock=unconfined');
    expect(s.annotations![LANDLOCK_ANNOTATION]).toBeUndefined();
    expect(applyLandlockSecurityOpt(s, 'seccomp=unconfined')).toBe(false);
  });
  it('a bad file is refused naming the option and the problem', () => {
    const bad = join(dir, 'bad.json');
    writeFileSync(bad, '{"read": ["/"], "exec": ["/bin"]}');
    expect(() => applyLandlockSecurityOpt(baseSpec(), `landlock=${bad}`)).toThrow(/--security-opt landlock=.*bad.json: unknown key "exec"/);
    expect(() => applyLandlockSecurityOpt(baseSpec(), `landlock=${join(dir, 'none.json')}`)).toThrow(/cannot read it: ENOENT/);
    expect(() => applyLandlockSecurityOpt(baseSpec(), 'landlock')).toThrow(/expected landlock=FILE.json/);
  });
});

describe('landlock control', () => {
  it('no annotation, no steps', () => {
    expect(control.steps(ctxFor(baseSpec()))).toEqual([]);
  });
  it('plans create, one rule per path, restrict — after no_new_privs and before seccomp', () => {
    const s = withRules({ read: ['/'], write: ['/tmp'], execute: ['/bin'] });
    s.linux.seccomp = { defaultAction: 'SCMP_ACT_ALLOW' };
    const steps = childSteps(buildPlan(ctxFor(s)));
    const ll = steps.filter((x) => x.op === 'LANDLOCK');
    expect(ll.map((x) => x.ints[0])).toEqual([0n, 1n, 1n, 1n, 2n]);
    expect(ll.slice(1, 4).map((x) => x.strs[0])).toEqual(['/', '/bin', '/tmp']);
    expect(ll[2]!.ints).toEqual([1n, GROUPS.execute, 0n]);
    const idx = (p: (x: ChildStep) => boolean) => steps.findIndex(p);
    expect(idx((x) => x.op === 'LANDLOCK')).toBeGreaterThan(idx((x) => x.op === 'NO_NEW_PRIVS'));
    expect(idx((x) => x.op === 'LANDLOCK')).toBeGreaterThan(idx((x) => x.op === 'CAPSET'));
    expect(idx((x) => x.op === 'SECCOMP')).toBeGreaterThan(idx((x) => x.ints[0] === 2n && x.op === 'LANDLOCK'));
    expect(steps.at(-1)!.op).toBe('EXEC');
    // the encoder knows the op
    expect(encodePlan(ll).readUInt32LE(16)).toBe(OP.LANDLOCK);
  });
  it('builtin rules are optional (a path the image lacks is skipped by init)', () => {
    const s = baseSpec();
    s.process.noNewPrivileges = true;
    applyLandlockSecurityOpt(s, 'landlock=builtin');
    const rules = (control.steps(ctxFor(s)) as ChildStep[]).filter((x) => x.ints[0] === 1n);
    expect(rules.every((r) => r.ints[2] === 1n)).toBe(true);
  });
  it('is refused without no_new_privs unless the process keeps CAP_SYS_ADMIN', () => {
    const s = withRules({ read: ['/'] }, false);
    expect(() => control.validate!(ctxFor(s))).toThrow(/landlock_restrict_self\(2\) needs no_new_privs or CAP_SYS_ADMIN/);
    s.process.capabilities = { effective: ['CAP_SYS_ADMIN'] };
    expect(() => control.validate!(ctxFor(s))).not.toThrow();
  });
  it('is refused, naming the LSM list, when the kernel lists its LSMs without landlock', () => {
    const ctx = ctxFor(withRules({ read: ['/'] }));
    ctx.host.lsms = ['capability', 'apparmor'];
    expect(() => control.validate!(ctx)).toThrow(/Landlock .* is not active on this kernel \(LSMs: capability,apparmor/);
    ctx.host.lsms = ['capability', 'landlock'];
    expect(() => control.validate!(ctx)).not.toThrow();
    // securityfs not mounted: the LSMs are unknown, and init's landlock_create_ruleset decides
    ctx.host.lsms = [];
    expect(() => control.validate!(ctx)).not.toThrow();
  });
  it('a bundle annotation that is not a valid profile is a spec error naming the annotation', () => {
    const s = baseSpec();
    s.process.noNewPrivileges = true;
    s.annotations = { [LANDLOCK_ANNOTATION]: '{"read": "/"' };
    expect(() => control.validate!(ctxFor(s))).toThrow(/annotations\["io.tsrun.landlock"\]: not JSON/);
    s.annotations[LANDLOCK_ANNOTATION] = '{"read": ["relative"]}';
    expect(() => control.validate!(ctxFor(s))).toThrow(/annotations\["io.tsrun.landlock"\]: "read": "relative"/);
  });
});
