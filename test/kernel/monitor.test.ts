import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, expect, it } from 'vitest';
import { describeKernel, leaks, testEnv, tsrun } from './helpers.js';
import { until } from '../until.js';

// Issue 12.6: a detached container whose tsrun-monitor was killed (SIGKILL: nothing can
// catch it) had nobody to log its output or to reap it. Now the monitor's parent, its keeper
// (a subreaper), takes over: nothing is lost. When both are killed, every verb must say so
// instead of reporting a monitored "running" container, its exit code must never be a silent
// null, and a `run -d --rm` container must still go away. The OOM case is the same race seen
// from the other side: the init is dead while its monitor has not yet written exit.json.

/**
 * The container's own cgroup directories among those its run created. A shared parent it
 * happened to create (/tsrun, /tsrun/<root tag>) is removed only when empty, and another
 * state root's containers (a second checkout's tests) may be in it by then.
 */
const ownCgroups = (created: string[] | undefined, id: string) => (created ?? []).filter((d) => d.includes(id));
const stateOf = (id: string) => JSON.parse(readFileSync(join(testEnv().root, id, 'state.json'), 'utf8')) as { pid: number; monitorPid: number; keeperPid: number; cgroupsCreated?: string[] };
const inspect = (id: string) => {
  const r = tsrun(['inspect', id]);
  expect(r.stderr).toBe('');
  return JSON.parse(r.stdout)[0];
};
/** `Z` (a zombie), another state letter, or undefined when the pid is gone */
const procState = (pid: number): string | undefined => {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return s.slice(s.lastIndexOf(')') + 2).split(' ')[0];
  } catch {
    return undefined;
  }
};
const alive = (pid: number) => procState(pid) !== undefined && procState(pid) !== 'Z';

/** Kills this container's own monitor or keeper (pid from state.json, checked to be tsrun-monitor), and waits until it is dead. */
async function killMonitor(id: string, which: 'monitorPid' | 'keeperPid'): Promise<number> {
  const mp = stateOf(id)[which];
  expect(mp).toBeGreaterThan(0);
  expect(readFileSync(`/proc/${mp}/cmdline`, 'utf8').split('\0')[0]).toMatch(/tsrun-monitor$/);
  process.kill(mp, 'SIGKILL');
  await until(() => !alive(mp));
  return mp;
}

/** The numbers of the `line N` records of the log, to find a gap. */
const numbers = (out: string) => out.split('\n').filter((l) => l.startsWith('line ')).map((l) => Number(l.slice(5)));

const LOOP = 'i=0; while :; do i=$((i+1)); echo line $i; sleep 0.05; done';

describeKernel('a dead tsrun-monitor: every verb tells the truth, no exit code is lost, nothing is left', () => {
  const ids: string[] = [];
  afterEach(() => {
    for (const id of ids.splice(0)) tsrun(['rm', '-f', id]);
  });
  afterAll(() => {
    expect(leaks()).toEqual([]);
    // no monitor or keeper of this test's containers lives on (zombies have no cmdline: a
    // killed one whose parent, pid 1 here, does not reap is not counted)
    const mine = readdirSync('/proc')
      .filter((p) => /^\d+$/.test(p))
      .flatMap((p) => {
        try {
          const cmd = readFileSync(`/proc/${p}/cmdline`, 'utf8');
          return cmd.includes('tsrun-monitor') && cmd.includes(testEnv().base) ? [`${p} ${cmd}`] : [];
        } catch {
          return [];
        }
      });
    expect(mine).toEqual([]);
  });

  it('the monitor killed: its keeper logs on without a gap, reaps the container and records its exit code', async () => {
    const r = tsrun(['run', '-d', 'busybox', 'sh', '-c', `trap "exit 7" TERM; ${LOOP}`]);
    expect(r.stderr).toBe('');
    const id = r.stdout.trim();
    ids.push(id);
    await until(() => tsrun(['logs', id]).stdout.includes('line 3\n'));
    const { pid, keeperPid, cgroupsCreated } = stateOf(id);
    await killMonitor(id, 'monitorPid');
    const at = numbers(tsrun(['logs', id]).stdout).length;
    // the init is the keeper's child now, and the output goes on into the log
    await until(() => numbers(tsrun(['logs', id]).stdout).length > at + 5);
    expect(Number(readFileSync(`/proc/${pid}/status`, 'utf8').match(/^PPid:\s+(\d+)/m)![1])).toBe(keeperPid);
    const n = numbers(tsrun(['logs', id]).stdout);
    expect(n).toEqual(n.map((_, i) => i + 1));
    const ps = JSON.parse(tsrun(['ps', '--format', 'json']).stdout).find((c: { id: string }) => c.id === id);
    expect(ps).toMatchObject({ status: 'running', unmonitored: false, error: null });
    const stop = tsrun(['stop', id]);
    expect(stop.stderr).toBe('');
    expect(inspect(id).State).toMatchObject({ Status: 'stopped', ExitCode: 7, FinishedAt: expect.any(String), Unmonitored: false });
    expect(procState(pid)).toBeUndefined(); // reaped, not a zombie of pid 1
    expect(tsrun(['rm', id]).code).toBe(0);
    ids.splice(0);
    for (const d of ownCgroups(cgroupsCreated, id)) expect(existsSync(d)).toBe(false);
    expect(existsSync(join(testEnv().root, id))).toBe(false);
  });

  it('monitor and keeper killed: ps, inspect, logs, stop and rm tell the truth and leave nothing', async () => {
    const r = tsrun(['run', '-d', 'busybox', 'sh', '-c', LOOP]);
    expect(r.stderr).toBe('');
    const id = r.stdout.trim();
    ids.push(id);
    await until(() => tsrun(['logs', id]).stdout.includes('line 3\n'));
    const { pid, cgroupsCreated } = stateOf(id);
    await killMonitor(id, 'keeperPid');
    await killMonitor(id, 'monitorPid');
    // the init lives on, unmonitored: that is what every verb says
    expect(alive(pid)).toBe(true);
    const ps = JSON.parse(tsrun(['ps', '--format', 'json']).stdout).find((c: { id: string }) => c.id === id);
    expect(ps).toMatchObject({ status: 'running', pid, unmonitored: true, error: expect.stringMatching(/tsrun-monitor \(pid \d+, keeper pid \d+\) is gone/) });
    expect(tsrun(['ps']).stdout).toMatch(/running \(unmonitored\)/);
    const st = inspect(id).State;
    expect(st).toMatchObject({ Status: 'running', Pid: pid, Unmonitored: true, ExitCode: null, Error: expect.stringMatching(/not logged/) });
    // the log ends where the monitor died, and says so (with -f too: it does not wait forever)
    for (const args of [['logs', id], ['logs', '-f', id]]) {
      const logs = tsrun(args, { timeout: 5000 });
      expect(logs.code).toBe(0);
      expect(logs.stdout).toMatch(/^line 1\nline 2\nline 3\n/);
      expect(logs.stderr).toMatch(/^tsrun: warning: .*tsrun-monitor \(pid \d+, keeper pid \d+\) is gone.*output/m);
    }
    // stop still stops it (sh as PID 1 ignores SIGTERM: SIGKILL after 1 s), promptly, and says how it ended
    const t0 = Date.now();
    const stop = tsrun(['stop', '-t', '1', id]);
    expect(stop.code).toBe(0);
    expect(Date.now() - t0).toBeLessThan(5000);
    expect(alive(pid)).toBe(false);
    const after = inspect(id).State;
    expect(after.Status).toBe('stopped');
    expect(after.ExitCode).not.toBeNull();
    if (procState(pid) === 'Z') {
      // nobody reaped it yet (the new parent, pid 1 here, does not): the kernel still has its status
      expect(after).toMatchObject({ ExitCode: 137, Error: expect.stringMatching(/read from the kernel/) });
    } else {
      expect(after).toMatchObject({ ExitCode: -1, Error: expect.stringMatching(/exit code is unknown/) });
    }
    expect(tsrun(['wait', id]).stdout.trim()).toBe(String(after.ExitCode));
    expect(tsrun(['ps', '-a']).stdout).toMatch(new RegExp(`${id.slice(0, 12)}.*Exited \\(${after.ExitCode === -1 ? 'unknown' : after.ExitCode}\\)`));
    // rm leaves nothing: state, data, cgroups, live processes
    const rm = tsrun(['rm', id]);
    expect(rm.stderr).toBe('');
    expect(rm.code).toBe(0);
    ids.splice(0);
    expect(existsSync(join(testEnv().root, id))).toBe(false);
    expect(existsSync(join(testEnv().data, 'containers', id))).toBe(false);
    expect(cgroupsCreated?.length).toBeGreaterThan(0);
    for (const d of ownCgroups(cgroupsCreated, id)) expect(existsSync(d)).toBe(false);
    expect(alive(pid)).toBe(false);
  });

  it('run -d --rm, its monitor or its keeper killed: removed when it exits', async () => {
    for (const which of ['monitorPid', 'keeperPid'] as const) {
      const id = tsrun(['run', '-d', '--rm', 'busybox', 'sh', '-c', LOOP]).stdout.trim();
      ids.push(id);
      await until(() => tsrun(['logs', id]).stdout.includes('line 2\n'));
      const { cgroupsCreated } = stateOf(id);
      await killMonitor(id, which);
      expect(tsrun(['kill', id, 'KILL']).code).toBe(0);
      // removed by whichever of the two lives on, without any further tsrun command
      await until(() => !existsSync(join(testEnv().root, id)) && !existsSync(join(testEnv().data, 'containers', id)));
      for (const d of ownCgroups(cgroupsCreated, id)) expect(existsSync(d)).toBe(false);
      ids.splice(0);
    }
  });

  it('run -d --rm, monitor and keeper killed: removed by the next verb once it stops', async () => {
    const r = tsrun(['run', '-d', '--rm', 'busybox', 'sh', '-c', LOOP]);
    const id = r.stdout.trim();
    ids.push(id);
    await until(() => tsrun(['logs', id]).stdout.includes('line 2\n'));
    const { pid, cgroupsCreated } = stateOf(id);
    await killMonitor(id, 'keeperPid');
    await killMonitor(id, 'monitorPid');
    expect(tsrun(['kill', id, 'KILL']).code).toBe(0);
    await until(() => !alive(pid));
    // docker run --rm: once it has exited the container is gone, monitor or not
    const ps = tsrun(['ps', '-a', '--format', 'json']);
    expect(JSON.parse(ps.stdout).map((c: { id: string }) => c.id)).not.toContain(id);
    expect(existsSync(join(testEnv().root, id))).toBe(false);
    expect(existsSync(join(testEnv().data, 'containers', id))).toBe(false);
    for (const d of ownCgroups(cgroupsCreated, id)) expect(existsSync(d)).toBe(false);
    expect(tsrun(['inspect', id]).stderr).toBe(`tsrun: no such object: "${id}" is neither a container nor an image\n`);
  });

  it('-m 32m, killed by the OOM killer: inspected as it dies, ExitCode 137 and OOMKilled, never null (10 times)', () => {
    for (let i = 0; i < 10; i++) {
      const id = tsrun(['run', '-d', '-m', '32m', 'busybox', 'tail', '/dev/zero']).stdout.trim();
      ids.push(id);
      let st: { Status: string; ExitCode: number | null; OOMKilled: boolean } | undefined;
      for (let j = 0; j < 500; j++) {
        st = inspect(id).State;
        if (st!.Status === 'stopped') break;
      }
      expect({ i, Status: st?.Status, ExitCode: st?.ExitCode, OOMKilled: st?.OOMKilled }).toEqual({ i, Status: 'stopped', ExitCode: 137, OOMKilled: true });
      expect(tsrun(['rm', id]).code).toBe(0);
      ids.splice(0);
    }
  });
});
