import { describe, expect, it } from 'vitest';
import { applySecurityOptSystemPaths, control, defaultMaskedPaths, defaultReadonlyPaths, setExistsCheck } from '../../src/controls/masked-paths.js';
import type { ChildStep } from '../../src/plan/types.js';
import { baseSpec, ctxFor } from './privileges-fixture.js';

describe('masked and read-only paths', () => {
  it('has docker\'s lists', () => {
    expect(defaultMaskedPaths()).toEqual(expect.arrayContaining(['/proc/kcore', '/proc/keys', '/proc/timer_list', '/proc/sched_debug', '/sys/firmware', '/proc/acpi', '/proc/scsi']));
    expect(defaultReadonlyPaths().sort()).toEqual(['/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger']);
  });

  it('bind+remount read-only paths, then masks, all after the pivot', () => {
    setExistsCheck(() => true);
    const s = baseSpec();
    s.linux.readonlyPaths = ['/proc/sys'];
    s.linux.maskedPaths = ['/proc/kcore', '/sys/firmware'];
    const steps = control.steps(ctxFor(s)) as ChildStep[];
    expect(steps.map((x) => [x.phase, x.op, x.strs])).toEqual([
      ['post-pivot', 'MOUNT', ['/proc/sys', '/proc/sys', '', '']],
      ['post-pivot', 'REMOUNT_RO', ['/proc/sys']],
      ['post-pivot', 'MASK_PATH', ['/proc/kcore']],
      ['post-pivot', 'MASK_PATH', ['/sys/firmware']],
    ]);
    expect(steps[0]!.ints).toEqual([0x1000n | 0x4000n]); // MS_BIND|MS_REC
    expect(steps[2]!.why).toMatch(/physical memory/);
  });

  it('leaves out /proc and /sys paths this kernel does not have', () => {
    setExistsCheck((p) => p !== '/proc/timer_stats');
    const s = baseSpec();
    s.linux.maskedPaths = ['/proc/timer_stats', '/proc/keys', '/opt/secret'];
    expect((control.steps(ctxFor(s)) as ChildStep[]).map((x) => x.strs[0])).toEqual(['/proc/keys', '/opt/secret']);
  });

  it('rejects relative paths and ..', () => {
    const s = baseSpec();
    s.linux.maskedPaths = ['proc/kcore'];
    expect(() => control.validate!(ctxFor(s))).toThrow(/linux\.maskedPaths\[0\]: "proc\/kcore" is not an absolute path/);
    s.linux.maskedPaths = [];
    s.linux.readonlyPaths = ['/proc/../etc'];
    expect(() => control.validate!(ctxFor(s))).toThrow(/linux\.readonlyPaths\[0\]/);
  });

  it('systempaths=unconfined empties both lists', () => {
    const s = baseSpec();
    s.linux.maskedPaths = defaultMaskedPaths();
    applySecurityOptSystemPaths(s, 'unconfined');
    expect(s.linux.maskedPaths).toEqual([]);
    expect(control.steps(ctxFor(s))).toEqual([]);
    expect(() => applySecurityOptSystemPaths(s, 'confined')).toThrow(/systempaths/);
  });
});
