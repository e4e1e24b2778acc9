import { describe, expect, it } from 'vitest';
import { applySecurityOptNnp, control } from '../../src/controls/nnp.js';
import type { ChildStep } from '../../src/plan/types.js';
import { baseSpec, ctxFor } from './privileges-fixture.js';

describe('no-new-privileges', () => {
  it('accepts the bare form, =true and =false', () => {
    const s = baseSpec();
    applySecurityOptNnp(s);
    expect(s.process.noNewPrivileges).toBe(true);
    applySecurityOptNnp(s, 'false');
    expect(s.process.noNewPrivileges).toBe(false);
    applySecurityOptNnp(s, 'TRUE');
    expect(s.process.noNewPrivileges).toBe(true);
  });
  it('rejects other values naming the option', () => {
    expect(() => applySecurityOptNnp(baseSpec(), 'yes')).toThrow(/--security-opt no-new-privileges: expected true or false, got "yes"/);
  });
  it('emits PR_SET_NO_NEW_PRIVS in phase nnp only when asked', () => {
    const s = baseSpec();
    expect(control.steps(ctxFor(s))).toEqual([]);
    s.process.noNewPrivileges = true;
    const steps = control.steps(ctxFor(s)) as ChildStep[];
    expect(steps).toHaveLength(1);
    expect(steps[0]).toMatchObject({ where: 'child', phase: 'nnp', op: 'NO_NEW_PRIVS', ints: [], strs: [] });
  });
});
