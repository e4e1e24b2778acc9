import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { buildPlan, childSteps } from '../../src/plan/build.js';
import { encodePlan } from '../../src/plan/encode.js';
import { MSG, OP, PLAN_MAGIC, PLAN_VERSION, INIT_FAILED } from '../../src/plan/protocol.js';
import { renderPlan, planJson } from '../../src/plan/render.js';
import type { BuildContext } from '../../src/plan/types.js';
import { CHILD_PHASES } from '../../src/plan/types.js';
import { specFromFlags, type RunOptions } from '../../src/spec/from-flags.js';
import { RUN_FLAGS } from '../../src/cli/flags.js';
import { SpecError, UnsupportedError } from '../../src/errors.js';

const ROOT = join(import.meta.dirname, '..', '..');

function ctxFor(opts: RunOptions = {}, args: string[] = ['sh'], over: Partial<BuildContext> = {}): BuildContext {
  const spec = specFromFlags({
    id: 'a'.repeat(64),
    image: { name: 'busybox', config: { Cmd: ['sh'] } },
    args,
    opts,
    rootfs: '/var/lib/tsrun/containers/x/merged',
    containerDir: '/var/lib/tsrun/containers/x',
    env: { readImageFile: () => undefined, ncpu: 2 },
    flags: RUN_FLAGS,
  });
  return {
    id: 'a'.repeat(64),
    spec,
    rootfs: '/var/lib/tsrun/containers/x/merged',
    overlay: { lower: ['/img/l1', '/img/l2'], upper: '/var/lib/tsrun/containers/x/upper', work: '/var/lib/tsrun/containers/x/work' },
    containerDir: '/var/lib/tsrun/containers/x',
    host: { capEff: 0n, lsms: [], ncpu: 2 },
    terminal: Boolean(opts.tty),
    waitStart: false,
    ...over,
  };
}

describe('protocol', () => {
  it('mirrors native/protocol.h number for number', () => {
    const h = readFileSync(join(ROOT, 'native', 'protocol.h'), 'utf8');
    const ops = Object.fromEntries([...h.matchAll(/^\s*OP_([A-Z_]+) = (\d+),/gm)].map((m) => [m[1], Number(m[2])]));
    expect(ops).toEqual(OP);
    const msgs = Object.fromEntries([...h.matchAll(/^\s*MSG_([A-Z_]+) = (\d+)/gm)].map((m) => [m[1], Number(m[2])]));
    expect(msgs).toEqual(MSG);
    expect(Number(/TSRUN_PLAN_MAGIC (0x[0-9a-f]+)u/.exec(h)![1])).toBe(PLAN_MAGIC);
    expect(Number(/TSRUN_PLAN_VERSION (\d+)/.exec(h)![1])).toBe(PLAN_VERSION);
    expect(Number(/INIT_FAILED (\d+)/.exec(h)![1])).toBe(INIT_FAILED);
  });

  it('encodes ops as header, u64 ints, padded blob, NUL-terminated strings, 8-byte aligned', () => {
    const buf = encodePlan([
      { op: 'MOUNT', ints: [7n], strs: ['a', '', 'bc', ''], text: '' },
      { op: 'SECCOMP', ints: [0n], strs: [], blob: new Uint8Array([1, 2, 3]), text: '' },
    ]);
    expect(buf.readUInt32LE(0)).toBe(PLAN_MAGIC);
    expect(buf.readUInt32LE(8)).toBe(2);
    expect(buf.readUInt32LE(12)).toBe(buf.length);
    const size1 = buf.readUInt32LE(16 + 4);
    expect(buf.readUInt32LE(16)).toBe(OP.MOUNT);
    expect(buf.readUInt16LE(16 + 8)).toBe(1);
    expect(buf.readUInt16LE(16 + 10)).toBe(4);
    expect(buf.readBigUInt64LE(16 + 16)).toBe(7n);
    expect(buf.subarray(16 + 24, 16 + 24 + 7).toString('latin1')).toBe('a\0\0bc\0\0');
    expect(size1 % 8).toBe(0);
    const o2 = 16 + size1;
    expect(buf.readUInt32LE(o2)).toBe(OP.SECCOMP);
    expect(buf.readUInt32LE(o2 + 12)).toBe(3);
    expect([...buf.subarray(o2 + 24, o2 + 27)]).toEqual([1, 2, 3]);
  });

  it('refuses strings the C side could not read back', () => {
    expect(() => encodePlan([{ op: 'CHDIR', ints: [], strs: ['a\0b'], text: '' }])).toThrow(/NUL/);
  });
});

describe('spec → plan', () => {
  it('creates every namespace in one clone, the cgroup one after the cgroup join', () => {
    const plan = buildPlan(ctxFor());
    expect(plan.cloneFlags).toEqual(['CLONE_NEWPID', 'CLONE_NEWIPC', 'CLONE_NEWUTS', 'CLONE_NEWNS', 'CLONE_NEWNET']);
    const steps = childSteps(plan);
    const first = steps.findIndex((s) => s.phase !== 'join');
    expect(steps.slice(0, first).every((s) => s.op === 'WRITE_FILE' && s.strs[0]!.endsWith('/tasks'))).toBe(true);
    expect(steps[first]!.text).toBe('unshare(CLONE_NEWCGROUP)');
  });

  it('orders steps by phase: mounts (proc included) before pivot_root, exec last', () => {
    const plan = buildPlan(ctxFor());
    const steps = childSteps(plan);
    const ranks = steps.map((s) => CHILD_PHASES.indexOf(s.phase));
    expect(ranks).toEqual([...ranks].sort((a, b) => a - b));
    const pivot = steps.findIndex((s) => s.op === 'PIVOT_ROOT');
    const proc = steps.findIndex((s) => s.op === 'MOUNT' && s.strs[2] === 'proc');
    expect(proc).toBeGreaterThan(-1);
    expect(proc).toBeLessThan(pivot);
    expect(steps.at(-1)!.op).toBe('EXEC');
    // mount propagation is made private before anything is mounted
    expect(steps.find((s) => s.op === 'MOUNT')!.text).toBe('mount(NULL, "/", NULL, MS_REC|MS_PRIVATE)');
  });

  it('rootfsPropagation: the tree is made private (or slave) before any mount; sharing is applied to the new root after pivot_root', () => {
    const mounts = (value: string) => {
      const c = ctxFor();
      c.spec.linux.rootfsPropagation = value;
      const steps = childSteps(buildPlan(c));
      const pivot = steps.findIndex((s) => s.op === 'PIVOT_ROOT');
      const prop = steps.filter((s) => s.op === 'MOUNT' && s.strs[0] === '' && s.strs[1] === '/');
      return { first: prop[0]!.text, firstBeforePivot: steps.indexOf(prop[0]!) < pivot, after: prop.filter((s) => steps.indexOf(s) > pivot).map((s) => s.text) };
    };
    for (const v of ['shared', 'rshared', 'private', 'rprivate', 'unbindable', 'runbindable']) {
      expect(mounts(v).first, v).toBe('mount(NULL, "/", NULL, MS_REC|MS_PRIVATE)');
      expect(mounts(v).firstBeforePivot).toBe(true);
    }
    for (const v of ['slave', 'rslave']) expect(mounts(v).first, v).toBe('mount(NULL, "/", NULL, MS_REC|MS_SLAVE)');
    expect(mounts('rshared').after).toEqual(['mount(NULL, "/", NULL, MS_SHARED|MS_REC)']);
    expect(mounts('shared').after).toEqual(['mount(NULL, "/", NULL, MS_SHARED)']);
    expect(mounts('runbindable').after).toEqual(['mount(NULL, "/", NULL, MS_UNBINDABLE|MS_REC)']);
    expect(mounts('rprivate').after).toEqual([]);
    expect(mounts('rslave').after).toEqual([]);
  });

  it('mounts the overlay with the top layer first', () => {
    const ov = childSteps(buildPlan(ctxFor())).find((s) => s.op === 'MOUNT' && s.strs[2] === 'overlay')!;
    expect(ov.strs[3]).toBe('lowerdir=/img/l2:/img/l1,upperdir=/var/lib/tsrun/containers/x/upper,workdir=/var/lib/tsrun/containers/x/work');
  });

  it('--read-only remounts / read-only after pivot_root; -v :ro remounts the bind', () => {
    const steps = childSteps(buildPlan(ctxFor({ readOnly: true, volume: ['/tmp:/data:ro'] })));
    const ro = steps.filter((s) => s.op === 'REMOUNT_RO').map((s) => [s.phase, s.strs[0]]);
    expect(ro).toEqual([
      ['mounts', '/var/lib/tsrun/containers/x/merged/data'],
      ['post-pivot', '/'],
    ]);
  });

  it('gives a terminal from the container\'s devpts with -t, its own session otherwise', () => {
    const tty = childSteps(buildPlan(ctxFor({ tty: true })));
    expect(tty.some((s) => s.op === 'CONSOLE')).toBe(true);
    expect(tty.some((s) => s.op === 'SETSID')).toBe(false);
    const plain = childSteps(buildPlan(ctxFor()));
    expect(plain.some((s) => s.op === 'CONSOLE')).toBe(false);
    expect(plain.find((s) => s.op === 'SETSID')?.phase).toBe('early');
  });

  it('--network host keeps the host network namespace and skips loopback set-up', () => {
    const plan = buildPlan(ctxFor({ network: 'host' }));
    expect(plan.cloneFlags).not.toContain('CLONE_NEWNET');
    expect(childSteps(plan).some((s) => s.op === 'LOOPBACK_UP')).toBe(false);
  });

  it('joins a network namespace by path (podman\'s netavark, a pod sandbox): setns early, no new netns, no loopback set-up', () => {
    const ctx = ctxFor();
    ctx.spec.linux.namespaces = ctx.spec.linux.namespaces.map((n) => (n.type === 'network' || n.type === 'ipc' ? { ...n, path: `/run/netns/${n.type}` } : n));
    const plan = buildPlan(ctx);
    expect(plan.cloneFlags).not.toContain('CLONE_NEWNET');
    expect(plan.cloneFlags).not.toContain('CLONE_NEWIPC');
    expect(plan.cloneFlags).toContain('CLONE_NEWPID');
    const steps = childSteps(plan);
    const joins = steps.filter((s) => s.op === 'SETNS');
    expect(joins.map((s) => s.strs[0])).toEqual(['/run/netns/ipc', '/run/netns/network']);
    expect(joins.every((s) => s.phase === 'early')).toBe(true);
    expect(steps.some((s) => s.op === 'LOOPBACK_UP')).toBe(false);
    expect(steps.indexOf(joins[0]!)).toBeLessThan(steps.findIndex((s) => s.op === 'PIVOT_ROOT'));
  });

  it('switches user after the system steps and before exec', () => {
    const steps = childSteps(buildPlan(ctxFor({ user: '1000:100' })));
    const ops = steps.map((s) => s.op);
    expect(ops.indexOf('SETRESUID')).toBeGreaterThan(ops.indexOf('SETHOSTNAME'));
    expect(ops.indexOf('SETRESGID')).toBeLessThan(ops.indexOf('SETRESUID'));
    expect(steps.find((s) => s.op === 'SETRESUID')!.ints).toEqual([1000n]);
  });

  it('validates bundles: unknown namespace, joined namespaces, relative mount destinations', () => {
    const ctx = ctxFor();
    ctx.spec.linux.namespaces.push({ type: 'bogus' as never });
    expect(() => buildPlan(ctx)).toThrow(SpecError);
    const j = ctxFor();
    j.spec.linux.namespaces = [{ type: 'user', path: '/proc/9/ns/user' }, { type: 'mount', path: '/proc/9/ns/mnt' }, { type: 'pid' }, { type: 'uts' }, { type: 'network' }];
    // a joined user namespace: the clone makes none (they would belong to the host's user
    // namespace); the other joins first, the user namespace last, then unshare and fork
    const jp = buildPlan(j);
    expect(jp.cloneFlags).toEqual([]);
    const jops = childSteps(jp).filter((s) => s.phase === 'early' && s.control === 'namespaces');
    expect(jops.map((s) => `${s.op}${s.strs[0] ? ` ${s.strs[0]}` : ''}`)).toEqual(['SETNS /proc/9/ns/mnt', 'SETNS /proc/9/ns/user', 'UNSHARE', 'FORK']);
    expect(jops[2]!.text).toBe('unshare(CLONE_NEWPID|CLONE_NEWUTS|CLONE_NEWNET)');
    expect(jops[0]!.text).toMatch(/^linux\.namespaces\[1\]\.path: setns/);
    const time = ctxFor();
    time.spec.linux.namespaces.push({ type: 'time', path: '/proc/1/ns/time' });
    expect(() => buildPlan(time)).toThrow(UnsupportedError);
    // a joined pid namespace: setns, then the fork that puts the container in it, last of the joins
    const p = ctxFor();
    p.spec.linux.namespaces = [{ type: 'mount' }, { type: 'uts' }, { type: 'pid', path: '/proc/1/ns/pid' }, { type: 'network', path: '/run/netns/x' }];
    const ops = childSteps(buildPlan(p)).filter((s) => s.phase === 'early').map((s) => `${s.op}${s.strs[0] ? ` ${s.strs[0]}` : ''}`);
    expect(ops.slice(0, 3)).toEqual(['SETNS /run/netns/x', 'SETNS /proc/1/ns/pid', 'FORK']);
    const rel = ctxFor();
    rel.spec.linux.namespaces = [{ type: 'mount' }, { type: 'network', path: 'netns/x' }];
    expect(() => buildPlan(rel)).toThrow(/linux\.namespaces\[1\]\.path: "netns\/x" must be an absolute path/);
    const m = ctxFor();
    m.spec.mounts = [{ destination: 'relative', type: 'tmpfs' }];
    expect(() => buildPlan(m)).toThrow(/mounts\[0\].destination/);
  });

  it('renders every step with its control and reason, and as JSON', () => {
    const plan = buildPlan(ctxFor());
    const text = renderPlan(plan, { $C: '/var/lib/tsrun/containers/x' });
    expect(text).toContain('pivot_root(".", ".")');
    expect(text).toContain('$C/merged/proc');
    expect(text).not.toMatch(/containers\/x\/merged\/proc/);
    for (const s of plan.steps) expect(s.why.length).toBeGreaterThan(3);
    const json = planJson(plan) as { steps: { control: string }[] };
    expect(json.steps).toHaveLength(plan.steps.length);
  });
});
