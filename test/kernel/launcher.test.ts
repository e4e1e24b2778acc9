// bin/tsrun (native/launch.c): node from the start-up snapshot when its stamp fits, the plain
// bundle otherwise; either way the container's exit code comes back unchanged.
import { spawn, spawnSync } from 'node:child_process';
import { copyFileSync, cpSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { BIN, describeKernel, leaks, tsrun, tsrunEnvVars } from './helpers.js';

const ROOT = join(import.meta.dirname, '..', '..');

/** argv of the process bin/tsrun became, read while its container sleeps */
async function cmdlineOf(env: Record<string, string>): Promise<string[]> {
  const c = spawn(BIN, ['run', '--rm', 'busybox', 'sleep', '1'], { env: { ...tsrunEnvVars(), ...env }, stdio: 'ignore' });
  await new Promise((r) => setTimeout(r, 400));
  const argv = readFileSync(`/proc/${c.pid}/cmdline`, 'utf8').split('\0').filter(Boolean);
  expect(await new Promise((r) => c.on('exit', r))).toBe(0);
  return argv;
}

describeKernel('bin/tsrun, the launcher', () => {
  let copy = '';
  beforeAll(() => {
    // a second checkout: the launcher, the bundles and the blob, in another directory
    copy = mkdtempSync(join(tmpdir(), 'tsrun-launch-'));
    for (const d of ['build', 'dist', 'bin']) mkdirSync(join(copy, d));
    copyFileSync(join(ROOT, 'build', 'tsrun-launch'), join(copy, 'build', 'tsrun-launch'));
    symlinkSync('../build/tsrun-launch', join(copy, 'bin', 'tsrun'));
    copyFileSync(join(ROOT, 'bin', 'tsrun-node.mjs'), join(copy, 'bin', 'tsrun-node.mjs'));
    for (const f of ['tsrun.mjs', 'tsrun.blob', 'tsrun.blob.stamp']) copyFileSync(join(ROOT, 'dist', f), join(copy, 'dist', f));
    cpSync(join(ROOT, 'package.json'), join(copy, 'package.json'));
  });
  afterAll(() => {
    rmSync(copy, { recursive: true, force: true });
    expect(leaks()).toEqual([]);
  });

  it('starts node from the snapshot when the stamp fits; TSRUN_NO_SNAPSHOT=1 takes the plain bundle', async () => {
    const stamp = readFileSync(join(ROOT, 'dist', 'tsrun.blob.stamp'), 'utf8').split('\n');
    expect(stamp[0]).toBe('tsrun-snapshot-stamp 1');
    const snap = await cmdlineOf({});
    expect(snap.slice(0, 4)).toEqual([stamp[1], '--snapshot-blob', join(ROOT, 'dist', 'tsrun.blob'), '--']);
    expect(snap.slice(4)).toEqual(['run', '--rm', 'busybox', 'sleep', '1']);
    const plain = await cmdlineOf({ TSRUN_NO_SNAPSHOT: '1' });
    expect(plain.slice(1)).toEqual([join(ROOT, 'bin', 'tsrun-node.mjs'), 'run', '--rm', 'busybox', 'sleep', '1']);
  });

  it('`tsrun pull` takes the pull-only bundle (its peak RSS was ~12 MB higher from the snapshot, ~6 MB from the whole CLI\'s bundle)', async () => {
    // a "registry" that accepts and never answers: the pull waits while its argv is read
    const server = net.createServer(() => {});
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const host = `127.0.0.1:${(server.address() as net.AddressInfo).port}`;
    const data = mkdtempSync(join(tmpdir(), 'tsrun-launch-pull-'));
    const c = spawn(BIN, ['pull', `${host}/x/y:1`], { env: { ...tsrunEnvVars(), TSRUN_DATA: data }, stdio: 'ignore' });
    try {
      await new Promise((r) => setTimeout(r, 400));
      const argv = readFileSync(`/proc/${c.pid}/cmdline`, 'utf8').split('\0').filter(Boolean);
      expect(argv.slice(1)).toEqual([join(ROOT, 'bin', 'tsrun-pull.mjs'), 'pull', `${host}/x/y:1`]);
    } finally {
      const gone = new Promise((r) => c.on('exit', r));
      c.kill('SIGKILL');
      await gone;
      server.close();
      rmSync(data, { recursive: true, force: true });
    }
  });

  it('passes the container\'s exit code through both ways, and tsrun\'s own', () => {
    for (const env of [{}, { TSRUN_NO_SNAPSHOT: '1' }]) {
      for (const code of [0, 1, 14, 42, 137]) expect(tsrun(['run', '--rm', 'busybox', 'sh', '-c', `exit ${code}`], { env }).code).toBe(code);
      expect(tsrun(['run', '--rm', 'busybox', 'no-such-command'], { env }).code).toBe(127);
      expect(tsrun(['run', '--rm', 'busybox', '/etc/passwd'], { env }).code).toBe(126);
      const bad = tsrun(['run', '--rm', '--pids-limit', 'many', 'busybox', 'true'], { env });
      expect(bad.code).toBe(125);
      expect(bad.stderr).toMatch(/--pids-limit/);
    }
  });

  it('takes the plain bundle when the stamp names another directory (a moved checkout)', () => {
    // the blob is made unloadable: were it used, node would refuse it (exit 14)
    writeFileSync(join(copy, 'dist', 'tsrun.blob'), 'not a snapshot');
    const r = spawnSync(join(copy, 'bin', 'tsrun'), ['--version'], { encoding: 'utf8' });
    expect(r.stderr).toBe('');
    expect(r.stdout.trim()).toMatch(/^\d+\.\d+\.\d+$/);
    expect(r.status).toBe(0);
  });

  it('probes a blob once per machine: one node cannot load → the plain bundle, verdict cached', () => {
    // the copy's stamp names its own directory and the real node, so only the probe can tell
    // that this blob (garbage, as on a machine whose V8 configuration differs) does not load
    const stamp = readFileSync(join(ROOT, 'dist', 'tsrun.blob.stamp'), 'utf8').split('\n');
    stamp[4] = copy;
    writeFileSync(join(copy, 'dist', 'tsrun.blob.stamp'), stamp.join('\n'));
    const verdicts = () => readdirSync(join(copy, 'dist')).filter((f) => /^tsrun\.blob\.(un)?fit/.test(f));
    expect(verdicts()).toEqual([]);
    for (let i = 0; i < 2; i++) {
      const r = spawnSync(join(copy, 'bin', 'tsrun'), ['--version'], { encoding: 'utf8' });
      expect(r.stderr).toBe('');
      expect(r.status).toBe(0);
      expect(r.stdout.trim()).toMatch(/^\d+\.\d+\.\d+$/);
      expect(verdicts()).toEqual([expect.stringMatching(/^tsrun\.blob\.unfit-[0-9a-f]{16}$/)]);
    }
    // the real blob in the copy: the probe says it loads, and the launcher uses it
    copyFileSync(join(ROOT, 'dist', 'tsrun.blob'), join(copy, 'dist', 'tsrun.blob'));
    for (const f of verdicts()) rmSync(join(copy, 'dist', f));
    expect(spawnSync(join(copy, 'bin', 'tsrun'), ['--version'], { encoding: 'utf8' }).status).toBe(0);
    expect(verdicts()).toEqual([expect.stringMatching(/^tsrun\.blob\.fits-[0-9a-f]{16}$/)]);
    // a node binary other than the stamp's (size or time differ): the plain bundle, no probe
    stamp[2] = String(Number(stamp[2]) + 1);
    writeFileSync(join(copy, 'dist', 'tsrun.blob.stamp'), stamp.join('\n'));
    const p = spawnSync(join(copy, 'bin', 'tsrun'), ['--version'], { encoding: 'utf8' });
    expect(p.status).toBe(0);
    expect(p.stdout.trim()).toMatch(/^\d+\.\d+\.\d+$/);
  });
});
