import { describe, expect, it } from 'vitest';
import { buildPlan, childSteps } from '../../src/plan/build.js';
import { encodePlan } from '../../src/plan/encode.js';
import { hooksOf } from '../../src/controls/hooks.js';
import { specFromFlags } from '../../src/spec/from-flags.js';
import { RUN_FLAGS } from '../../src/cli/flags.js';
import type { BuildContext } from '../../src/plan/types.js';
import type { Spec } from '../../src/spec/types.js';

function ctx(hooks: unknown, waitStart = true): BuildContext {
  const spec = specFromFlags({
    id: 'b'.repeat(64),
    image: { name: 'busybox', config: { Cmd: ['sh'] } },
    args: [],
    opts: {},
    rootfs: '/bundle/rootfs',
    containerDir: '/c',
    env: { readImageFile: () => undefined, ncpu: 2 },
    flags: RUN_FLAGS,
  }) as Spec;
  (spec as { hooks?: unknown }).hooks = hooks;
  return { id: 'b'.repeat(64), spec, rootfs: '/bundle/rootfs', bundle: '/bundle', containerDir: '/c', host: { capEff: 0n, lsms: [], ncpu: 2 }, terminal: false, waitStart };
}

const h = (path: string) => [{ path, args: [path.split('/').pop()!, 'x'], env: ['A=1'], timeout: 3 }];

describe('OCI hooks in the plan', () => {
  it('places each kind where the runtime spec says, in lifecycle order', () => {
    const plan = buildPlan(ctx({ poststop: h('/h/stop'), startContainer: h('/h/sc'), poststart: h('/h/ps'), createContainer: h('/h/cc'), createRuntime: h('/h/cr'), prestart: h('/h/pre') }));
    const where = plan.steps.map((s) => (s.where === 'parent' ? (s.action === 'hook' ? `tsrun:${s.kind}` : '') : s.op === 'RUN_HOOK' || s.op === 'HOOK_SYNC' || s.op === 'PIVOT_ROOT' || s.op === 'WAIT_START' || s.op === 'EXEC' ? `init:${s.op}` : '')).filter(Boolean);
    expect(where).toEqual(['init:HOOK_SYNC', 'tsrun:prestart', 'tsrun:createRuntime', 'init:RUN_HOOK', 'init:PIVOT_ROOT', 'init:WAIT_START', 'init:RUN_HOOK', 'init:EXEC', 'tsrun:poststart', 'tsrun:poststop']);
    const [cc, sc] = childSteps(plan).filter((s) => s.op === 'RUN_HOOK');
    // ints: timeout, argc, envc, index; strs: path, argv..., env...
    expect(cc!.ints).toEqual([3n, 2n, 1n, 0n]);
    expect(cc!.strs).toEqual(['/h/cc', 'cc', 'x', 'A=1']);
    // the init appends its pid and `}`: the prefix is the state up to "pid":
    const prefix = new TextDecoder().decode(cc!.blob);
    expect(JSON.parse(`${prefix}1}`)).toEqual({ ociVersion: plan.spec.ociVersion, id: 'b'.repeat(64), status: 'creating', bundle: '/bundle', annotations: plan.spec.annotations, pid: 1 });
    expect(JSON.parse(`${new TextDecoder().decode(sc!.blob)}1}`).status).toBe('created');
    expect(() => encodePlan(childSteps(plan))).not.toThrow();
    // without args the init still gives the hook an argv[0]: its path
    const bare = childSteps(buildPlan(ctx({ createContainer: [{ path: '/h/bare' }] }))).find((s) => s.op === 'RUN_HOOK')!;
    expect(bare.ints.slice(1, 3)).toEqual([1n, 0n]);
    expect(bare.strs).toEqual(['/h/bare', '/h/bare']);
  });

  it('no hooks, no steps; only the kinds given', () => {
    expect(buildPlan(ctx(undefined)).steps.filter((s) => s.control === 'hooks')).toEqual([]);
    const only = buildPlan(ctx({ poststop: h('/h/stop') })).steps.filter((s) => s.control === 'hooks');
    expect(only.map((s) => s.phase)).toEqual(['poststop']);
  });

  it('checks every field and names it', () => {
    const bad = (hooks: unknown) => () => hooksOf({ hooks } as unknown as Spec);
    expect(bad([])).toThrow(/^hooks: must be an object/);
    expect(bad({ prestart: {} })).toThrow(/^hooks\.prestart: must be an array/);
    expect(bad({ prestart: ['x'] })).toThrow(/^hooks\.prestart\[0\]: must be an object/);
    expect(bad({ poststop: [{ path: 'rel' }] })).toThrow(/^hooks\.poststop\[0\]\.path: required: an absolute path/);
    expect(bad({ poststop: [{ path: '/x', args: [1] }] })).toThrow(/^hooks\.poststop\[0\]\.args: must be an array of strings/);
    expect(bad({ poststop: [{ path: '/x', env: ['A'] }] })).toThrow(/^hooks\.poststop\[0\]\.env: each entry must be KEY=value/);
    for (const t of [0, -1, 1.5, '3']) expect(bad({ poststop: [{ path: '/x', timeout: t }] })).toThrow(/^hooks\.poststop\[0\]\.timeout: must be an integer/);
    expect(bad({ postStop: [] })).toThrow(/^hooks\.postStop: unknown hook kind/);
    expect(hooksOf({ hooks: { prestart: null, poststop: [] } } as unknown as Spec)).toEqual({ poststop: [] });
  });

  it('refuses a createContainer hook with a joined PID or user namespace (their processes could reach the host binary)', () => {
    for (const type of ['pid', 'user'] as const) {
      const c = ctx({ createContainer: h('/h/cc') });
      c.spec.linux.namespaces = c.spec.linux.namespaces.filter((n) => n.type !== type).concat({ type, path: `/proc/9/ns/${type}` });
      expect(() => buildPlan(c)).toThrow(new RegExp(`hooks\\.createContainer.*joined ${type === 'pid' ? 'PID' : 'user'} namespace`));
      const ok = ctx({ createRuntime: h('/h/cr') });
      ok.spec.linux.namespaces = c.spec.linux.namespaces;
      expect(() => buildPlan(ok)).not.toThrow();
    }
  });
});
