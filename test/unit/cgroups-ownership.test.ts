// Ownership of cgroup directories (trust-boundary rule 5), on a fake cgroupfs in a temp dir:
// cleanup kills and removes only what this container's create made, and the default parent
// differs between state roots.
import { existsSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { CgroupManager, defaultCgroupParent, planCgroup, runCgroupAction, type ExecContext } from '../../src/controls/cgroups/manager.js';
import { detectLayout } from '../../src/controls/cgroups/mode.js';
import type { Spec } from '../../src/spec/types.js';

const root = mkdtempSync(join(tmpdir(), 'tsrun-cgown-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
const CTRL = ['pids', 'freezer'];
const mi = CTRL.map((c, i) => `${30 + i} 23 0:${30 + i} / ${join(root, c)} rw - cgroup cgroup rw,${c}`).join('\n');
const layout = detectLayout(mi, '');
for (const c of CTRL) mkdirSync(join(root, c));
const fake: ExecContext = {
  mkdir: (d) => {
    mkdirSync(d);
    writeFileSync(join(d, 'cgroup.procs'), '');
  },
  rmdir: (d) => rmSync(d, { recursive: true }),
  timeoutMs: 200,
};

function spec(linux: Partial<Spec['linux']> = {}): Spec {
  return { ociVersion: '1.2.0', process: { user: { uid: 0, gid: 0 }, args: ['sh'], cwd: '/' }, root: { path: 'r' }, linux: { namespaces: [{ type: 'pid' }], ...linux } };
}

describe('cgroup ownership', () => {
  it('create records exactly the levels its mkdir made; destroy removes only those', () => {
    mkdirSync(join(root, 'pids/app')); // someone else's parent, in one hierarchy only
    const m = new CgroupManager(spec({ cgroupsPath: '/app/c1' }), 'c1', layout);
    m.create(fake);
    expect([...m.created].sort()).toEqual([join(root, 'freezer/app'), join(root, 'freezer/app/c1'), join(root, 'pids/app/c1')]);
    m.destroy(fake);
    expect(existsSync(join(root, 'pids/app/c1'))).toBe(false);
    expect(existsSync(join(root, 'freezer/app/c1'))).toBe(false);
    expect(existsSync(join(root, 'pids/app'))).toBe(true); // an explicit path's parent stays
  });

  it('an existing linux.cgroupsPath is joined but neither emptied nor removed', () => {
    for (const c of CTRL) fake.mkdir!(join(root, c, 'theirs'));
    // a process of theirs: the kill step would SIGKILL it if it ran (pid 2^22+1 cannot exist)
    writeFileSync(join(root, 'pids/theirs/cgroup.procs'), '4194305\n');
    const m = new CgroupManager(spec({ cgroupsPath: '/theirs' }), 'c2', layout);
    m.create(fake);
    expect(m.created.size).toBe(0);
    m.destroy(fake);
    for (const c of CTRL) expect(existsSync(join(root, c, 'theirs/cgroup.procs'))).toBe(true);
  });

  it('kill and remove steps do nothing without a record of creation (an old or damaged state)', () => {
    fake.mkdir!(join(root, 'pids/orphan'));
    for (const s of planCgroup(spec({ cgroupsPath: '/orphan' }), 'o', layout).steps) {
      if (s.phase === 'cleanup' && s.action === 'cgroup' && s.verb !== 'oom-check') runCgroupAction(s, { ...fake });
    }
    expect(existsSync(join(root, 'pids/orphan'))).toBe(true);
  });

  it('the default parent is per state root and stable; both its levels are removed once empty', () => {
    const a = defaultCgroupParent('/run/tsrun');
    expect(a).toMatch(/^\/tsrun\/[0-9a-f]{12}$/);
    expect(defaultCgroupParent('/run/tsrun/')).toBe(a);
    expect(defaultCgroupParent('/tmp/other-root')).not.toBe(a);
    expect(defaultCgroupParent()).toBe('/tsrun');
    // the same root through a symlink, before and after it is made (exec recomputes the path)
    symlinkSync(root, join(root, 'link'));
    const viaLink = defaultCgroupParent(join(root, 'link', 'state'));
    expect(viaLink).toBe(defaultCgroupParent(join(root, 'state')));
    mkdirSync(join(root, 'state'));
    expect(defaultCgroupParent(join(root, 'link', 'state'))).toBe(viaLink);
    const m = new CgroupManager(spec(), 'c3', layout, { defaultParent: a });
    expect(m.targets.map((t) => t.dir).sort()).toEqual(CTRL.map((c) => join(root, c, a, 'c3')).sort());
    const ifEmpty = m.plan.steps.filter((s) => s.phase === 'cleanup' && s.action === 'cgroup' && s.value === 'if-empty').map((s) => (s.action === 'cgroup' ? s.path : ''));
    expect(ifEmpty).toEqual(CTRL.flatMap((c) => [join(root, c, a, 'c3'), join(root, c, a), join(root, c, 'tsrun')]));
    m.create(fake);
    expect(m.created).toContain(join(root, 'pids', a, 'c3'));
    m.destroy(fake);
    for (const c of CTRL) expect(existsSync(join(root, c, a, 'c3'))).toBe(false);
  });
});
