import { describe, expect, it } from 'vitest';
import {
  RLIM_INFINITY,
  RLIMITS,
  SPEC_INFINITY,
  checkRlimits,
  control,
  flags,
  parseProcLimits,
  parseUlimit,
  setRlimitHostReader,
  toRlim,
} from '../../src/controls/rlimits.js';
import type { ChildStep } from '../../src/plan/types.js';
import { HOST_CAPEFF, baseSpec, ctxFor } from './privileges-fixture.js';

const PROC_LIMITS = `Limit                     Soft Limit           Hard Limit           Units
Max cpu time              unlimited            unlimited            seconds
Max file size             unlimited            unlimited            bytes
Max data size             unlimited            unlimited            bytes
Max stack size            8388608              unlimited            bytes
Max core file size        0                    unlimited            bytes
Max resident set          unlimited            unlimited            bytes
Max processes             96364                96364                processes
Max open files            20000                20000                files
Max locked memory         8388608              8388608              bytes
Max address space         unlimited            unlimited            bytes
Max file locks            unlimited            unlimited            locks
Max pending signals       96364                96364                signals
Max msgqueue size         819200               819200               bytes
Max nice priority         0                    0
Max realtime priority     0                    0
Max realtime timeout      unlimited            unlimited            us
`;
const host = { limits: parseProcLimits(PROC_LIMITS), nrOpen: 1048576n };

describe('--ulimit parsing', () => {
  it('accepts every name docker accepts', () => {
    for (const n of ['core', 'cpu', 'data', 'fsize', 'locks', 'memlock', 'msgqueue', 'nice', 'nofile', 'nproc', 'rss', 'rtprio', 'rttime', 'sigpending', 'stack'])
      expect(parseUlimit(`${n}=10:20`)).toEqual({ type: `RLIMIT_${n.toUpperCase()}`, soft: 10, hard: 20 });
    expect(RLIMITS.map((r) => r.resource)).toEqual([...Array(16).keys()]);
  });
  it('hard defaults to soft; -1 and unlimited mean RLIM_INFINITY', () => {
    expect(parseUlimit('nofile=1024')).toEqual({ type: 'RLIMIT_NOFILE', soft: 1024, hard: 1024 });
    expect(parseUlimit('core=-1:unlimited')).toEqual({ type: 'RLIMIT_CORE', soft: SPEC_INFINITY, hard: SPEC_INFINITY });
    expect(toRlim(SPEC_INFINITY)).toBe(RLIM_INFINITY);
    expect(toRlim(-1)).toBe(RLIM_INFINITY);
  });
  it('rejects bad input naming the flag', () => {
    expect(() => parseUlimit('nofiles=1')).toThrow(/--ulimit nofiles=1: unknown limit "nofiles"/);
    expect(() => parseUlimit('as=1')).toThrow(/unknown limit "as"/);
    expect(() => parseUlimit('nofile=2048:1024')).toThrow(/soft limit 2048 is above the hard limit 1024/);
    expect(() => parseUlimit('nofile=lots')).toThrow(/"lots" is not a number/);
    expect(() => parseUlimit('nofile')).toThrow(/expected NAME=SOFT\[:HARD\]/);
  });
  it('the flag row replaces earlier values of the same limit', () => {
    const s = baseSpec();
    flags[0]!.apply!(s, ['nofile=100:200', 'nproc=50', 'nofile=300:400'], { readImageFile: () => undefined, ncpu: 1 });
    expect(s.process.rlimits).toEqual([
      { type: 'RLIMIT_NOFILE', soft: 300, hard: 400 },
      { type: 'RLIMIT_NPROC', soft: 50, hard: 50 },
    ]);
  });
});

describe('checks against the host', () => {
  it('parses /proc/self/limits', () => {
    expect(host.limits.get(7)).toEqual({ soft: 20000n, hard: 20000n });
    expect(host.limits.get(3)).toEqual({ soft: 8388608n, hard: RLIM_INFINITY });
  });
  it('refuses a hard limit above tsrun\'s own without CAP_SYS_RESOURCE, saying EPERM', () => {
    const s = baseSpec();
    s.process.rlimits = [parseUlimit('nofile=64000:64000')];
    expect(() => checkRlimits(s, HOST_CAPEFF, host)).toThrow(
      /process\.rlimits\[0\]: RLIMIT_NOFILE \(--ulimit nofile\) hard 64000 is above tsrun's own hard limit 20000.*CAP_SYS_RESOURCE.*EPERM.*--ulimit nofile=20000:20000/,
    );
    // with the capability the kernel allows it (up to fs.nr_open)
    expect(() => checkRlimits(s, HOST_CAPEFF | (1n << 24n), host)).not.toThrow();
    s.process.rlimits = [parseUlimit('nofile=2000000')];
    expect(() => checkRlimits(s, HOST_CAPEFF | (1n << 24n), host)).toThrow(/fs\.nr_open/);
  });
  it('allows values at or below the hard limits', () => {
    const s = baseSpec();
    s.process.rlimits = [parseUlimit('nofile=1024:20000'), parseUlimit('nproc=100:200'), parseUlimit('core=0')];
    expect(() => checkRlimits(s, HOST_CAPEFF, host)).not.toThrow();
  });
  it('checks a bundle\'s rlimits field by field', () => {
    const s = baseSpec();
    s.process.rlimits = [{ type: 'RLIMIT_FOO', soft: 1, hard: 1 }];
    expect(() => checkRlimits(s, HOST_CAPEFF, host)).toThrow(/process\.rlimits\[0\]\.type: unknown limit "RLIMIT_FOO"/);
    s.process.rlimits = [{ type: 'RLIMIT_NOFILE', soft: 10, hard: 5 }];
    expect(() => checkRlimits(s, HOST_CAPEFF, host)).toThrow(/soft 10 is above hard 5/);
    s.process.rlimits = [
      { type: 'RLIMIT_NOFILE', soft: 1, hard: 1 },
      { type: 'RLIMIT_NOFILE', soft: 1, hard: 1 },
    ];
    expect(() => checkRlimits(s, HOST_CAPEFF, host)).toThrow(/process\.rlimits\[1\]\.type: RLIMIT_NOFILE given twice/);
  });
  it('emits one setrlimit per limit in phase system', () => {
    setRlimitHostReader(() => host);
    const s = baseSpec();
    s.process.rlimits = [parseUlimit('nofile=1024:2048'), parseUlimit('core=-1')];
    const c = ctxFor(s);
    control.validate!(c);
    const steps = control.steps(c) as ChildStep[];
    expect(steps.map((x) => [x.phase, x.op, x.ints])).toEqual([
      ['system', 'SETRLIMIT', [7n, 1024n, 2048n]],
      ['system', 'SETRLIMIT', [4n, RLIM_INFINITY, RLIM_INFINITY]],
    ]);
    expect(steps[1]!.text).toBe('setrlimit(RLIMIT_CORE, {soft=unlimited, hard=unlimited})');
  });
});
