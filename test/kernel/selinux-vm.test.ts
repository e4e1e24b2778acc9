// SELinux, enforcing, for real: our hosts' kernel has it compiled in but not active, so the
// QEMU guest of cgroups-v2-vm.test.ts boots with security=selinux and loads Debian's refpolicy
// plus tsrun's test module (test/vm/selinux/tsrun.te), built on the host. One guest per run.
import { relative } from 'node:path';
import { describe, expect, it } from 'vitest';
import { PROJECT, ensureSelinuxPolicy, runGuest, type GuestResult } from '../vm/harness.js';

const isRoot = process.getuid?.() === 0;
const ci = process.env.CI === 'true';

describe.skipIf(!isRoot && !ci)('SELinux (enforcing) in a QEMU guest', () => {
  let result: GuestResult | undefined;
  const lines = (): string[] => (result?.output ?? '').split('\n').map((l) => l.replace(/\r$/, ''));

  it('boots the guest enforcing and runs the SELinux suite', async () => {
    if (!isRoot) throw new Error('the VM test needs root (apt-get, qemu with 9p of /)');
    const policy = relative(PROJECT, ensureSelinuxPolicy());
    result = await runGuest('test/vm/guest-selinux.sh', { timeoutMs: 240_000, append: `security=selinux selinux=1 enforcing=0 tsrun_selinux_policy=${policy}` });
    console.log(result.output.split('\n').filter((l) => /^(ok|not ok|#|tsrun-vm|1\.\.)/.test(l.trim())).join('\n'));
    console.log(`guest run: ${result.ms} ms`);
    expect(result.code, `guest crashed or timed out:\n${result.output.slice(-3000)}`).not.toBeNull();
    expect(lines().filter((l) => l.startsWith('not ok'))).toEqual([]);
    expect(result.code).toBe(0);
    expect(lines().filter((l) => l.startsWith('ok ')).length).toBe(5);
  }, 300_000);
});
