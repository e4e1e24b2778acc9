import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { cgroupTargets } from '../../src/controls/cgroups/manager.js';
import { detectLayout } from '../../src/controls/cgroups/mode.js';
import { cpuPercent, formatBytes, formatTable, parseKeyValues, sampleCgroup, statsRow } from '../../src/controls/cgroups/stats.js';

const root = mkdtempSync(join(tmpdir(), 'tsrun-stats-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

function tree(files: Record<string, string>): void {
  for (const [p, v] of Object.entries(files)) {
    mkdirSync(join(root, p, '..'), { recursive: true });
    writeFileSync(join(root, p), v);
  }
}

describe('stats arithmetic', () => {
  it('CPU % is CPU time over wall time (100% = one CPU)', () => {
    expect(cpuPercent({ cpuNs: 0, at: 0n }, { cpuNs: 500_000_000, at: 1_000_000_000n })).toBeCloseTo(50);
    expect(cpuPercent({ cpuNs: 0, at: 0n }, { cpuNs: 2e9, at: 1_000_000_000n })).toBeCloseTo(200);
    expect(cpuPercent({ at: 0n }, { cpuNs: 1, at: 1n })).toBeUndefined();
  });
  it('bytes in docker\'s units', () => {
    expect(formatBytes(512)).toBe('512B');
    expect(formatBytes(32 * 1024 * 1024)).toBe('32.00MiB');
    expect(formatBytes(undefined)).toBe('--');
  });
  it('key-value files', () => {
    expect(parseKeyValues('usage_usec 10\nnr_throttled 3\n')).toEqual({ usage_usec: 10, nr_throttled: 3 });
  });
});

describe('samples from fixture cgroup trees', () => {
  it('v1: usage minus inactive file cache, cpuacct in ns, pids', () => {
    const mi = ['memory', 'cpu', 'cpuacct', 'pids'].map((c, i) => `${30 + i} 23 0:${30 + i} / ${join(root, 'v1', c)} rw - cgroup cgroup rw,${c}`).join('\n');
    const layout = detectLayout(mi, '');
    tree({
      'v1/memory/tsrun/a/memory.usage_in_bytes': '10485760\n',
      'v1/memory/tsrun/a/memory.stat': 'cache 0\ntotal_inactive_file 2097152\n',
      'v1/memory/tsrun/a/memory.limit_in_bytes': '33554432\n',
      'v1/cpuacct/tsrun/a/cpuacct.usage': '123456789\n',
      'v1/cpu/tsrun/a/cpu.stat': 'nr_periods 10\nnr_throttled 4\nthrottled_time 99\n',
      'v1/pids/tsrun/a/pids.current': '7\n',
    });
    const s = sampleCgroup(cgroupTargets(layout, '/tsrun/a'), 8 * 1024 ** 3);
    expect(s).toMatchObject({ memoryUsage: 8 * 1024 * 1024, memoryLimit: 32 * 1024 * 1024, cpuNs: 123456789, pids: 7, throttledPeriods: 4 });
  });
  it('v2: memory.current, unlimited memory.max shows the host\'s memory, cpu.stat usage_usec', () => {
    const layout = detectLayout(`30 23 0:30 / ${join(root, 'v2')} rw - cgroup2 cgroup2 rw`, 'cpu memory pids');
    tree({
      'v2/tsrun/b/memory.current': '4096\n',
      'v2/tsrun/b/memory.stat': 'anon 4096\ninactive_file 0\n',
      'v2/tsrun/b/memory.max': 'max\n',
      'v2/tsrun/b/cpu.stat': 'usage_usec 2000\nnr_throttled 1\n',
      'v2/tsrun/b/pids.current': '3\n',
    });
    const s = sampleCgroup(cgroupTargets(layout, '/tsrun/b'), 1024 ** 3);
    expect(s).toMatchObject({ memoryUsage: 4096, memoryLimit: 1024 ** 3, cpuNs: 2_000_000, pids: 3, throttledPeriods: 1 });
    const row = statsRow('b'.repeat(64), 'web', { ...s, cpuNs: 0, at: s.at - 4_000_000n }, s);
    expect(row).toMatchObject({ ID: 'bbbbbbbbbbbb', Name: 'web', CPUPerc: '50.00%', MemUsage: '4.00KiB / 1.00GiB', PIDs: '3' });
    expect(formatTable([row]).split('\n')[0]).toMatch(/^CONTAINER ID\s+NAME\s+CPU %\s+MEM USAGE \/ LIMIT\s+MEM %\s+PIDS$/);
  });
});
