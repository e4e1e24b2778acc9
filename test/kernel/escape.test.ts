import { spawn, spawnSync } from 'node:child_process';
import { afterAll, expect, it } from 'vitest';
import { planRun } from '../../src/cli/run.js';
import { nativeKernel } from '../../src/kernel/native.js';
import { closeSync, openSync, readSync } from 'node:fs';
import { attachAndWait, startContainer } from '../../src/runtime/run.js';
import { describeKernel, leaks, testEnv } from './helpers.js';

// Workshop lab 1 (CVE-2019-5736) against the process tsrun puts into a container: the
// init, paused before its exec exactly as OCI `create` leaves it. A container process
// (here the probe, entered with nsenter into all of the init's namespaces) tries both
// forms of the attack on /proc/1/exe. The target is tsrun-init's sealed memfd — never a
// host file — so even a failure of the defence could not damage the host.
describeKernel('CVE-2019-5736: the runtime binary is out of reach', () => {
  afterAll(() => expect(leaks()).toEqual([]));

  it('shows a sealed memfd as /proc/<init>/exe, which can be neither opened nor reopened for writing', async () => {
    const e = testEnv();
    const plan = await planRun('probe', ['/probe', 'sleep', '3'], { waitStart: true }, { root: e.root, data: e.data });
    const started = await startContainer({ plan, interactive: false });
    expect(started.state).toBe("created");
    try {
      const exe = spawnSync('readlink', [`/proc/${started.pid}/exe`], { encoding: 'utf8' }).stdout.trim();
      expect(exe).toBe('/memfd:tsrun-init (deleted)');

      const direct = spawnSync('nsenter', ['-t', String(started.pid), '-a', '/probe', 'open-write', '/proc/1/exe'], { encoding: 'utf8' });
      expect(JSON.parse(direct.stdout)).toEqual({ op: 'open-write', errno: 'ETXTBSY' });

      // the 2019 variant: hold an O_PATH fd while the runtime runs, reopen it for writing after it exec'd away
      const attacker = spawn('nsenter', ['-t', String(started.pid), '-a', '/probe', 'reopen-write', '/proc/1/exe', '1'], { stdio: ['ignore', 'pipe', 'inherit'] });
      const attackerDone = new Promise((r) => attacker.on('exit', r));
      let out = '';
      attacker.stdout.on('data', (c) => (out += c));
      await new Promise<void>((resolve) => attacker.stdout.once('data', () => resolve()));
      expect(out).toContain('"ready"');
      // what `tsrun start` does: open the start fifo for reading
      const fifo = plan.steps.find((x) => x.where === 'child' && x.op === 'WAIT_START')!;
      const fd = openSync((fifo as { strs: string[] }).strs[0]!, 'r');
      expect(readSync(fd, Buffer.alloc(1))).toBe(1);
      closeSync(fd);
      nativeKernel.close(started.syncFd);
      const code = await attachAndWait(plan, { ...started, syncFd: -1 });
      await attackerDone;
      expect(code).toBe(0);
      const result = JSON.parse(out.trim().split('\n').at(-1)!);
      // (the container sleeps 3 s, so the attacker, inside its PID namespace, outlives its 1 s wait)
      // the memfd no longer executes, so it may be opened, but its seals refuse every write
      expect(result.op).toBe('reopen-write');
      expect(result.write === 'EPERM' || result.open !== '0').toBe(true);
      expect(result.write).not.toBe('0');
    } finally {
      try {
        process.kill(started.pid, 'SIGKILL');
      } catch {
        /* exited */
      }
    }
  });
});
