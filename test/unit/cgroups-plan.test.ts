// The cgroups control inside the whole plan: flags → spec → plan → `explain` text.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { RUN_FLAGS } from '../../src/cli/flags.js';
import { detectLayout } from '../../src/controls/cgroups/mode.js';
import { buildPlan } from '../../src/plan/build.js';
import { renderPlan } from '../../src/plan/render.js';
import type { BuildContext, ParentStep } from '../../src/plan/types.js';
import { specFromFlags, type RunOptions } from '../../src/spec/from-flags.js';
import { UsageError } from '../../src/errors.js';

const hybrid = detectLayout(readFileSync(join(import.meta.dirname, 'fixtures/cgroups/hybrid.mountinfo'), 'utf8'), 'hugetlb');
const v2 = detectLayout(readFileSync(join(import.meta.dirname, 'fixtures/cgroups/v2.mountinfo'), 'utf8'), 'cpuset cpu io memory hugetlb pids');
const ID = 'c'.repeat(64);

function ctx(opts: RunOptions, layout = hybrid): BuildContext {
  const spec = specFromFlags({
    id: ID,
    image: { name: 'busybox', config: { Cmd: ['sh'] } },
    args: ['sh'],
    opts,
    rootfs: '/c/merged',
    containerDir: '/c',
    env: { readImageFile: () => undefined, ncpu: 2 },
    flags: RUN_FLAGS,
  });
  return { id: ID, spec, rootfs: '/c/merged', containerDir: '/c', host: { capEff: 0n, lsms: [], ncpu: 2, cgroupLayout: layout }, terminal: false, waitStart: false };
}

describe('cgroups in the plan', () => {
  it('explain shows the writes, the joins before the cgroupns unshare, and the cleanup', () => {
    const plan = buildPlan(ctx({ pidsLimit: '50', memory: '32m', cpus: '0.5' }));
    const text = renderPlan(plan, {});
    expect(text).toContain(`echo "50" > /sys/fs/cgroup/pids/tsrun/${ID}/pids.max`);
    expect(text).toContain(`echo "33554432" > /sys/fs/cgroup/memory/tsrun/${ID}/memory.limit_in_bytes`);
    expect(text).toContain(`echo "67108864" > /sys/fs/cgroup/memory/tsrun/${ID}/memory.memsw.limit_in_bytes`);
    expect(text).toContain(`echo "50000" > /sys/fs/cgroup/cpu/tsrun/${ID}/cpu.cfs_quota_us`);
    // v1: the init writes 0 to each hierarchy's tasks file itself, as its very first operations
    const v1 = hybrid.v1.filter((h) => h.controllers.length > 0);
    const joins = plan.steps.filter((s) => s.where === 'child' && s.phase === 'join');
    expect(joins.map((s) => s.where === 'child' && [s.op, s.strs[1]])).toEqual(v1.map(() => ['WRITE_FILE', '0']));
    expect(joins.map((s) => (s.where === 'child' ? s.strs[0] : ''))).toContain(`/sys/fs/cgroup/pids/tsrun/${ID}/tasks`);
    expect(text).not.toContain('echo $PID >');
    // cgroup2 (hybrid's unified): born there through clone3
    expect(text).toContain(`clone3(CLONE_INTO_CGROUP, open("/sys/fs/cgroup/unified/tsrun/${ID}", O_PATH))`);
    const i = (pred: (s: (typeof plan.steps)[number]) => boolean): number => plan.steps.findIndex(pred);
    const into = i((s) => s.where === 'parent' && (s as { verb?: string }).verb === 'clone-into');
    const clone = i((s) => s.where === 'parent' && (s as ParentStep).action === 'clone');
    const firstJoin = i((s) => s.where === 'child' && s.phase === 'join');
    const unshare = i((s) => s.where === 'child' && s.op === 'UNSHARE');
    expect(clone).toBeGreaterThanOrEqual(0);
    expect(into).toBeGreaterThan(clone);
    // the cgroup namespace's root is the cgroup the init is in when it unshares
    expect(firstJoin).toBeGreaterThan(into);
    expect(unshare).toBeGreaterThan(firstJoin + joins.length - 1);
    const last = plan.steps.filter((s) => s.phase === 'cleanup' && s.control === 'cgroups').map((s) => (s as { verb?: string }).verb);
    // per hierarchy: the container's own dir (if tsrun created it), the same if empty, /tsrun if empty
    expect(last).toEqual(['oom-check', 'kill', ...Array(27).fill('remove')]);
  });

  it('in a user namespace the init cannot write the host\'s tasks files: tsrun writes cgroup.procs before GO', () => {
    const c = ctx({ pidsLimit: '50' });
    const map = [{ containerID: 0, hostID: 100000, size: 65536 }];
    c.spec.linux = { ...c.spec.linux, namespaces: [...c.spec.linux.namespaces, { type: 'user' }], uidMappings: map, gidMappings: map };
    const plan = buildPlan(c);
    const text = renderPlan(plan, {});
    expect(plan.steps.some((s) => s.where === 'child' && s.phase === 'join')).toBe(false);
    expect(text).toContain(`echo $PID > /sys/fs/cgroup/pids/tsrun/${ID}/cgroup.procs`);
    expect(text).toContain('clone3(CLONE_INTO_CGROUP');
  });

  it('pure v2: one directory, controllers enabled from the root down, cgroup2 read-only inside', () => {
    const plan = buildPlan(ctx({ pidsLimit: '20', cpuShares: '1024' }, v2));
    const text = renderPlan(plan, {});
    expect(text).toContain('echo "+cpuset +cpu +io +memory +pids +hugetlb" > /sys/fs/cgroup/cgroup.subtree_control');
    expect(text).toContain('echo "+cpuset +cpu +io +memory +pids +hugetlb" > /sys/fs/cgroup/tsrun/cgroup.subtree_control');
    expect(text).toContain(`echo "100" > /sys/fs/cgroup/tsrun/${ID}/cpu.weight`);
    expect(text).toMatch(/mount\("cgroup2", "\/c\/merged\/sys\/fs\/cgroup", "cgroup2", MS_NOSUID\|MS_NODEV\|MS_NOEXEC\|MS_RELATIME\|MS_RDONLY\)/);
  });

  it('--cgroup-parent places the container, --cgroupns host skips the unshare', () => {
    const plan = buildPlan(ctx({ cgroupParent: '/batch', cgroupns: 'host' }));
    expect(renderPlan(plan, {})).toContain(`mkdir -p /sys/fs/cgroup/pids/batch/${ID}`);
    expect(plan.steps.some((s) => s.where === 'child' && s.op === 'UNSHARE')).toBe(false);
    // a user's parent is not removed with the container
    expect(plan.steps.some((s) => (s as { value?: string }).value === 'if-empty')).toBe(false);
  });

  it('bad flag values stop at the spec, before any plan', () => {
    expect(() => ctx({ memory: '12xyz' })).toThrow(UsageError);
    expect(() => ctx({ cgroupParent: '../..' })).toThrow('--cgroup-parent: "../.." leaves the cgroup hierarchy ("..")');
  });
});
