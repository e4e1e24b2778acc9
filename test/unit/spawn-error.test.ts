// A clone that fails reaches the user as one line naming the call and the errno, not as an
// internal error (src/runtime/run.ts startContainer).
import { describe, expect, it } from 'vitest';
import { KernelError } from '../../src/errors.js';
import type { Kernel } from '../../src/kernel/types.js';
import type { Plan } from '../../src/plan/types.js';
import { startContainer } from '../../src/runtime/run.js';

const plan = { id: 'x', spec: { process: { args: ['true'] } }, cloneFlags: [], steps: [] } as unknown as Plan;
const kernel = { strerror: () => 'No such file or directory', pipe: () => [1000, 1001], close: () => undefined } as unknown as Kernel;

describe('spawn errors', () => {
  it('name the failing call and the errno by name', async () => {
    const spawner = () => {
      throw Object.assign(new Error('open /sys/fs/cgroup/x: No such file or directory'), { errno: 2, syscall: 'open /sys/fs/cgroup/x' });
    };
    const e = await startContainer({ plan, interactive: false, kernel, spawner }).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(KernelError);
    expect((e as Error).message).toBe('open /sys/fs/cgroup/x: ENOENT (No such file or directory) [namespaces]');
  });
});
