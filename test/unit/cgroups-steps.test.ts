// Helpers other verbs use, working from the cleanup steps a state file keeps.
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { cgroupDirsFromSteps, joinTargets, oomKilledFromSteps, planCgroup, setFrozen, targetsFromSteps } from '../../src/controls/cgroups/manager.js';
import { detectLayout } from '../../src/controls/cgroups/mode.js';
import { UnsupportedError, KernelError } from '../../src/errors.js';
import type { Spec } from '../../src/spec/types.js';

const root = mkdtempSync(join(tmpdir(), 'tsrun-cgsteps-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
const mi = ['memory', 'freezer', 'pids'].map((c, i) => `${30 + i} 23 0:${30 + i} / ${join(root, c)} rw - cgroup cgroup rw,${c}`).join('\n');
const layout = detectLayout(mi, '');
const spec: Spec = { ociVersion: '1.2.0', process: { user: { uid: 0, gid: 0 }, args: ['sh'], cwd: '/' }, root: { path: 'r' }, linux: { namespaces: [], resources: { memory: { limit: 64 << 20 } } } };
const steps = planCgroup(spec, 'x', layout).steps.filter((s) => s.phase === 'cleanup');

function put(path: string, text: string): void {
  mkdirSync(join(root, path, '..'), { recursive: true });
  writeFileSync(join(root, path), text);
}

describe('from saved cleanup steps', () => {
  it('finds the container\'s directories (not tsrun\'s shared parent)', () => {
    expect(cgroupDirsFromSteps(steps).sort()).toEqual(['freezer', 'memory', 'pids'].map((c) => join(root, c, 'tsrun/x')));
    expect(targetsFromSteps(layout, steps).map((t) => t.hierarchy.controllers[0]).sort()).toEqual(['freezer', 'memory', 'pids']);
  });
  it('joins a pid to every directory (exec)', () => {
    for (const c of ['memory', 'freezer', 'pids']) put(`${c}/tsrun/x/cgroup.procs`, '');
    joinTargets(targetsFromSteps(layout, steps), 4321);
    for (const c of ['memory', 'freezer', 'pids']) expect(readFileSync(join(root, c, 'tsrun/x/cgroup.procs'), 'utf8')).toBe('4321');
  });
  it('reads the OOM kill counter of the memory cgroup', () => {
    put('memory/tsrun/x/memory.oom_control', 'oom_kill_disable 0\nunder_oom 0\noom_kill 0\n');
    expect(oomKilledFromSteps(steps)).toBe(false);
    put('memory/tsrun/x/memory.oom_control', 'oom_kill_disable 0\nunder_oom 0\noom_kill 2\n');
    expect(oomKilledFromSteps(steps)).toBe(true);
  });
});

describe('setFrozen', () => {
  it('v1: writes freezer.state and waits for FROZEN', () => {
    put('freezer/tsrun/x/freezer.state', 'THAWED\n');
    const t = targetsFromSteps(layout, steps);
    setFrozen(t, true);
    expect(readFileSync(join(root, 'freezer/tsrun/x/freezer.state'), 'utf8')).toBe('FROZEN');
    setFrozen(t, false);
    expect(readFileSync(join(root, 'freezer/tsrun/x/freezer.state'), 'utf8')).toBe('THAWED');
  });
  it('v2: waits for cgroup.events to report it, and says so when it does not', () => {
    const l2 = detectLayout(`40 23 0:40 / ${join(root, 'v2')} rw - cgroup2 cgroup2 rw`, 'pids');
    put('v2/tsrun/y/cgroup.freeze', '0');
    put('v2/tsrun/y/cgroup.events', 'populated 1\nfrozen 0\n');
    const t = [{ hierarchy: l2.unified!, dir: join(root, 'v2/tsrun/y') }];
    expect(() => setFrozen(t, true, { timeoutMs: 30 })).toThrow(KernelError);
    expect(readFileSync(join(root, 'v2/tsrun/y/cgroup.freeze'), 'utf8')).toBe('1');
    put('v2/tsrun/y/cgroup.events', 'populated 1\nfrozen 1\n');
    expect(() => setFrozen(t, true, { timeoutMs: 30 })).not.toThrow();
  });
  it('without any freezer: a clear refusal', () => {
    const l = detectLayout(`50 23 0:50 / ${join(root, 'p')} rw - cgroup cgroup rw,pids`, '');
    expect(() => setFrozen([{ hierarchy: l.v1[0]!, dir: join(root, 'p/x') }], true)).toThrow(UnsupportedError);
  });
});
