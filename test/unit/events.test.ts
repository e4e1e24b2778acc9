import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { eventJson, oomKills, parseDuration, runcStats } from '../../src/controls/cgroups/events.js';
import type { CgroupTarget } from '../../src/controls/cgroups/manager.js';

describe('tsrun events (runc events format)', () => {
  it('parses Go durations as runc\'s --interval takes them', () => {
    expect(parseDuration('5s')).toBe(5000);
    expect(parseDuration('250ms')).toBe(250);
    expect(parseDuration('1m30s')).toBe(90_000);
    expect(parseDuration('1.5s')).toBe(1500);
    for (const bad of ['', '5', 's', '5 s', '-1s', '1d']) expect(() => parseDuration(bad)).toThrow();
  });

  it('writes uint64 counters exactly (beyond 2^53), as Go\'s encoder does', () => {
    expect(eventJson({ type: 'stats', id: 'x', data: { limit: 18446744073709551615n, usage: 3n, s: 'a' } })).toBe('{"type":"stats","id":"x","data":{"limit":18446744073709551615,"usage":3,"s":"a"}}');
    expect(eventJson({ type: 'oom', id: 'x' })).toBe('{"type":"oom","id":"x"}');
  });

  it('reads a v2 cgroup: cpu.stat in µs → ns, memory.max "max" → MaxUint64, io.stat → Read/Write entries, oom_kill', () => {
    const dir = mkdtempSync(join(tmpdir(), 'tsrun-ev-'));
    try {
      const files: Record<string, string> = {
        'cpu.stat': 'usage_usec 1500\nuser_usec 1000\nsystem_usec 500\nnr_periods 4\nnr_throttled 1\nthrottled_usec 7\n',
        'memory.current': '4096\n',
        'memory.max': 'max\n',
        'memory.stat': 'file 1024\nanon 2048\n',
        'memory.events': 'low 0\nhigh 0\nmax 2\noom 1\noom_kill 1\n',
        'pids.current': '3\n',
        'pids.max': 'max\n',
        'io.stat': '8:0 rbytes=10 wbytes=20 rios=1 wios=2 dbytes=0 dios=0\n',
        'hugetlb.2MB.current': '0\n',
        'hugetlb.2MB.events': 'max 0\n',
      };
      for (const [f, v] of Object.entries(files)) writeFileSync(join(dir, f), v);
      const t: CgroupTarget[] = [{ dir, hierarchy: { version: 2, mountPoint: '/sys/fs/cgroup', controllers: ['cpu', 'memory', 'pids', 'io', 'hugetlb'] } as never }];
      const s = JSON.parse(eventJson({ type: 'stats', id: 'x', data: runcStats(t) })).data;
      expect(s.cpu).toEqual({ usage: { total: 1500000, kernel: 500000, user: 1000000 }, throttling: { periods: 4, throttledPeriods: 1, throttledTime: 7000 } });
      expect(s.memory.usage).toEqual({ limit: 18446744073709552000, usage: 4096, failcnt: 2 });
      expect(s.memory.cache).toBe(1024);
      expect(s.pids).toEqual({ current: 3 });
      expect(s.blkio.ioServiceBytesRecursive).toEqual([{ major: 8, op: 'Read', value: 10 }, { major: 8, op: 'Write', value: 20 }]);
      expect(s.hugetlb).toEqual({ '2MB': { failcnt: 0 } });
      expect(oomKills(t)).toBe(1n);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
