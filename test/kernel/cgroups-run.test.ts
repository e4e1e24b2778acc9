// Resource limits through `tsrun run`, on this machine's kernel (hybrid: v1 controllers).
// Each test names its own --cgroup-parent, so the container's cgroup can be watched from
// outside and its removal checked.
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, expect, it } from 'vitest';
import { hostLayout } from '../../src/controls/cgroups/mode.js';
import { describeKernel, leaks, testEnv, tsrun, tsrunAsync } from './helpers.js';

const PARENT = `/tsrun-run-test-${process.pid}`;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Host directories of PARENT, one per hierarchy the manager uses. */
function parentDirs(): string[] {
  const l = hostLayout();
  return [...l.v1.filter((h) => h.controllers.length), ...(l.unified ? [l.unified] : [])].map((h) => join(h.mountPoint, PARENT));
}
function childCgroups(): string[] {
  return parentDirs().flatMap((d) => (existsSync(d) ? readdirSync(d, { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => join(d, e.name)) : []));
}
const ctrlDir = (controller: string): string => join(hostLayout().controllers[controller]!.mountPoint, PARENT);
const v1 = (c: string): boolean => hostLayout().controllers[c]?.version === 1;

describeKernel('cgroup limits through tsrun run', () => {
  afterEach(() => {
    // an empty parent cgroup also proves no process of ours survived; leaks()'s process scan
    // is host-wide and other sessions on a shared host run their own containers
    expect(childCgroups()).toEqual([]);
    expect(leaks().filter((l) => !l.startsWith('process:'))).toEqual([]);
  });
  afterAll(async () => {
    // the test parent must go too; a cgroup still inside it is a leak and fails the file
    for (let i = 0; i < 50 && parentDirs().some((d) => existsSync(d)); i++) {
      for (const d of parentDirs()) {
        try {
          rmdirSync(d);
        } catch {
          // ENOENT: never created here; EBUSY: a container's cgroup is still inside
        }
      }
      if (parentDirs().some((d) => existsSync(d))) await sleep(50);
    }
    expect(parentDirs().filter((d) => existsSync(d))).toEqual([]);
  });

  it('--pids-limit 50 holds a fork bomb; the shell cannot fork; the host stays responsive; the cgroup goes', async () => {
    const p = tsrunAsync(['run', '--rm', '--pids-limit', '50', '--cgroup-parent', PARENT, 'busybox', 'sh', '-c', // only builtins after the bomb (read, echo): they need no fork, whenever the bomb dies down
      `mkfifo /tmp/f; b() { b | b & }; b; read -t 2 x <> /tmp/f; read p < ${v1('pids') ? '/sys/fs/cgroup/pids/' : '/sys/fs/cgroup/'}pids.peak; echo "peak $p"; echo done`]);
    let stderr = '';
    let stdout = '';
    p.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    p.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
    const exited = new Promise<number | null>((r) => p.on('exit', (c) => r(c)));
    let dir: string | undefined;
    for (let i = 0; i < 100 && !dir; i++) {
      await sleep(20);
      if (existsSync(ctrlDir('pids'))) dir = readdirSync(ctrlDir('pids'), { withFileTypes: true }).find((e) => e.isDirectory())?.name;
    }
    if (!dir) {
      p.kill('SIGKILL');
      await exited;
    }
    expect(dir, 'container cgroup under the pids parent').toBeDefined();
    const pidsDir = join(ctrlDir('pids'), dir!);
    let peak = 0;
    let refused = 0;
    let hostMs = 0;
    const t0 = Date.now();
    while (Date.now() - t0 < 1500) {
      try {
        peak = Math.max(peak, Number(readFileSync(join(pidsDir, 'pids.current'), 'utf8')));
        refused = Number(/max (\d+)/.exec(readFileSync(join(pidsDir, 'pids.events'), 'utf8'))?.[1] ?? 0);
      } catch {
        break; // container already gone
      }
      const h0 = Date.now();
      spawnSync('true');
      hostMs = Math.max(hostMs, Date.now() - h0);
      await sleep(25);
    }
    const code = await exited;
    console.log(`tsrun run --pids-limit 50 fork bomb: peak pids.current ${peak}, pids.events max ${refused}, slowest host spawn ${hostMs} ms`);
    expect(code).toBe(0);
    expect(stdout).toContain('done');
    expect(stderr).toMatch(/can't fork/);
    // the bomb collapses once forks fail, so a busy host may sample it late: the kernel's
    // own high-water mark (pids.peak, Linux 6.1+) read inside the container is the witness
    const insidePeak = Number(/^peak (\d+)$/m.exec(stdout)?.[1] ?? 0);
    console.log(`pids.peak inside: ${insidePeak}`);
    expect(Math.max(peak, insidePeak)).toBeGreaterThan(10);
    expect(peak).toBeLessThanOrEqual(50);
    if (insidePeak) expect(insidePeak).toBeLessThanOrEqual(50);
    expect(refused).toBeGreaterThan(0);
    expect(hostMs).toBeLessThan(1000);
    expect(existsSync(pidsDir)).toBe(false);
  });

  it('-m 32m: a memory hog is OOM-killed, exit 137 with a message', () => {
    const r = tsrun(['run', '--rm', '-m', '32m', '--cgroup-parent', PARENT, 'busybox', 'sh', '-c', 'x=aaaaaaaa; while :; do x=$x$x; done']);
    expect(r.code).toBe(137);
    expect(r.stderr).toMatch(/^tsrun: the container was OOM-killed: it reached its memory limit \(32 MiB, oom_kill 1/m);
  });

  it('the container sees its limits read-only at /sys/fs/cgroup, its own cgroup as /', () => {
    const pidsMax = v1('pids') ? '/sys/fs/cgroup/pids/pids.max' : '/sys/fs/cgroup/pids.max';
    const r = tsrun(['run', '--rm', '--pids-limit', '42', '--cgroup-parent', PARENT, 'busybox', 'sh', '-c', `cat ${pidsMax}; grep -E '^[0-9]+:(pids)?:' /proc/self/cgroup; echo 1 > ${pidsMax} || echo refused`]);
    expect(r.code).toBe(0);
    const lines = r.stdout.trim().split('\n');
    expect(lines[0]).toBe('42');
    expect(lines[1]).toMatch(/^\d+:(pids)?:\/$/);
    expect(r.stdout).toContain('refused');
    expect(r.stderr).toMatch(/Read-only file system/);
  });

  it('--cgroupns host shows the host path of the container\'s cgroup', () => {
    const r = tsrun(['run', '--rm', '--cgroupns', 'host', '--cgroup-parent', PARENT, 'busybox', 'sh', '-c', "grep -E '^[0-9]+:(pids)?:' /proc/self/cgroup"]);
    expect(r.code).toBe(0);
    expect(r.stdout.trim().split('\n')[0]).toMatch(new RegExp(`^\\d+:(pids)?:${PARENT}/[0-9a-f]{64}$`));
  });

  it('the init is in the container\'s cgroup in every hierarchy: born in cgroup2, moved itself into each v1 one', () => {
    // with the host's cgroup namespace /proc/1/cgroup shows host paths; named v1 hierarchies
    // without controllers (name=systemd) are not the container's (runc leaves them too)
    const r = tsrun(['run', '--rm', '--cgroupns', 'host', '--cgroup-parent', PARENT, 'busybox', 'cat', '/proc/1/cgroup']);
    expect(r.code).toBe(0);
    const lines = r.stdout.trim().split('\n').filter((l) => !/^\d+:name=/.test(l));
    const l = hostLayout();
    expect(lines).toHaveLength(l.v1.filter((h) => h.controllers.length).length + (l.unified ? 1 : 0));
    const paths = new Set(lines.map((x) => x.split(':').slice(2).join(':')));
    expect(paths.size).toBe(1);
    expect([...paths][0]).toMatch(new RegExp(`^${PARENT}/[0-9a-f]{64}$`));
  });

  it('--cpus 0.5 shows in the cgroup files and a busy loop is throttled', () => {
    const cpuDir = v1('cpu') ? '/sys/fs/cgroup/cpu' : '/sys/fs/cgroup';
    const files = v1('cpu') ? `${cpuDir}/cpu.cfs_quota_us ${cpuDir}/cpu.cfs_period_us` : `${cpuDir}/cpu.max`;
    // Busy until the kernel has throttled the group 4 times, for at most 10 s: on a loaded
    // machine the loop may not get its half CPU in every period, so a fixed second could show
    // no throttling although the quota is there (seen under the suite beside other jobs).
    const loop = `s=$(date +%s); while [ $(( $(date +%s) - s )) -lt 10 ]; do i=0; while [ $i -lt 5000 ]; do i=$((i+1)); done; [ "$(sed -n 's/^nr_throttled //p' ${cpuDir}/cpu.stat)" -gt 3 ] && break; done; echo "secs $(( $(date +%s) - s ))"`;
    const r = tsrun(['run', '--rm', '--cpus', '0.5', '--cgroup-parent', PARENT, 'busybox', 'sh', '-c', `cat ${files}; ${loop}; cat ${cpuDir}/cpu.stat`]);
    expect(r.code).toBe(0);
    if (v1('cpu')) expect(r.stdout).toMatch(/^50000\n100000\n/);
    else expect(r.stdout).toMatch(/^50000 100000\n/);
    const throttled = Number(/nr_throttled (\d+)/.exec(r.stdout)?.[1]);
    console.log(`--cpus 0.5: nr_throttled ${throttled} after ${/secs (\d+)/.exec(r.stdout)?.[1]} s of busy loop`);
    expect(throttled).toBeGreaterThan(3);
  });

  it('--cpuset-cpus 1 pins the container to CPU 1', () => {
    const r = tsrun(['run', '--rm', '--cpuset-cpus', '1', '--cgroup-parent', PARENT, 'busybox', 'grep', 'Cpus_allowed_list', '/proc/self/status']);
    expect(r.code).toBe(0);
    expect(r.stdout.trim()).toMatch(/^Cpus_allowed_list:\s+1$/);
  });

  it('tsrun stats --no-stream --format json reports pids, memory limit and CPU of a running container', async () => {
    // the default parent (/tsrun/<root>); stats finds the container through its state in this root
    const p = tsrunAsync(['run', '--rm', '-m', '48m', '--pids-limit', '30', 'busybox', 'sh', '-c', 'while :; do :; done & sleep 4; kill %1']);
    const exited = new Promise<number | null>((r) => p.on('exit', (c) => r(c)));
    try {
      let rows: Record<string, any>[] = [];
      for (let i = 0; i < 20 && rows.length === 0; i++) {
        await sleep(100);
        const r = tsrun(['stats', '--no-stream', '--format', 'json']);
        expect(r.code, r.stderr).toBe(0);
        rows = r.stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, any>).filter((x) => x['raw'].memoryLimit === 48 * 1024 * 1024);
      }
      expect(rows).toHaveLength(1);
      const row = rows[0]!;
      console.log(`tsrun stats: ${JSON.stringify(row)}`);
      expect(row['ID']).toMatch(/^[0-9a-f]{12}$/);
      expect(row['MemUsage']).toMatch(/ \/ 48\.00MiB$/);
      expect(row['raw'].pids).toBeGreaterThanOrEqual(2);
      // a busy loop: near 100% of a CPU when the machine is idle, still well above an idle
      // container's ~0% when other jobs share the 2 CPUs (40% failed at load average 5)
      expect(row['raw'].cpuPercent).toBeGreaterThan(10);
      const table = tsrun(['stats', '--no-stream', row['ID']]);
      expect(table.code).toBe(0);
      expect(table.stdout).toMatch(new RegExp(`^CONTAINER ID .*\\n${row['ID']} `));
      const none = tsrun(['stats', '--no-stream', 'no-such-container']);
      expect(none.code).toBe(125);
      expect(none.stderr).toBe('tsrun: stats: no running container "no-such-container"\n');
    } finally {
      p.kill('SIGTERM');
      await exited;
    }
  });

  it('run -d: stats finds the container by name through its state; inspect reports OOMKilled', async () => {
    const name = `cg-web-${process.pid}`;
    const hog = `cg-hog-${process.pid}`;
    try {
      expect(tsrun(['run', '-d', '--name', name, '-m', '40m', '--cgroup-parent', PARENT, 'busybox', 'sh', '-c', 'while :; do :; done']).code).toBe(0);
      expect(tsrun(['run', '-d', '--name', hog, '-m', '32m', '--cgroup-parent', PARENT, 'busybox', 'sh', '-c', 'x=aaaaaaaa; while :; do x=$x$x; done']).code).toBe(0);
      const st = tsrun(['stats', '--no-stream', '--format', 'json', name]);
      expect(st.code, st.stderr).toBe(0);
      const row = JSON.parse(st.stdout) as Record<string, any>;
      expect(row['Name']).toBe(name);
      expect(row['MemUsage']).toMatch(/ \/ 40\.00MiB$/);
      expect(row['raw'].cpuPercent).toBeGreaterThan(30);
      let doc: Record<string, any> = {};
      for (let i = 0; i < 100; i++) {
        doc = (JSON.parse(tsrun(['inspect', hog]).stdout) as Record<string, any>[])[0]!;
        if (doc['State'].Status === 'stopped') break;
        await sleep(50);
      }
      expect(doc['State']).toMatchObject({ Status: 'stopped', ExitCode: 137, OOMKilled: true });
      // a stopped container is not listed by stats
      expect(tsrun(['stats', '--no-stream', hog]).code).toBe(125);
    } finally {
      tsrun(['rm', '-f', name, hog]);
    }
  });

  it('tsrun itself SIGKILLed mid-run: rm -f still empties and removes the container\'s cgroup', async () => {
    const name = `cg-orphan-${process.pid}`;
    const p = tsrunAsync(['run', '--name', name, '--pids-limit', '30', '--cgroup-parent', PARENT, 'busybox', 'sh', '-c', 'sleep 60 & sleep 60 & sleep 60']);
    const exited = new Promise((r) => p.on('exit', r));
    let dirs: string[] = [];
    for (let i = 0; i < 100 && dirs.length === 0; i++) {
      await sleep(20);
      dirs = childCgroups().filter((d) => existsSync(join(d, 'cgroup.procs')) && readFileSync(join(d, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean).length >= 3);
    }
    expect(dirs.length).toBeGreaterThan(0);
    p.kill('SIGKILL'); // the runtime dies; its container and cgroup stay behind
    await exited;
    expect(childCgroups().length).toBeGreaterThan(0);
    const r = tsrun(['rm', '-f', name]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(childCgroups()).toEqual([]);
  });

  it('tsrun stats streams a sample per second until interrupted', async () => {
    const name = `cg-stream-${process.pid}`;
    try {
      expect(tsrun(['run', '-d', '--name', name, '--pids-limit', '10', '--cgroup-parent', PARENT, 'busybox', 'sleep', '30']).code).toBe(0);
      const p = tsrunAsync(['stats', '--format', 'json', name]);
      let out = '';
      p.stdout!.on('data', (d: Buffer) => (out += d.toString()));
      const exited = new Promise<number | null>((r) => p.on('exit', (c) => r(c)));
      for (let i = 0; i < 60 && out.split('\n').filter(Boolean).length < 2; i++) await sleep(100);
      p.kill('SIGINT');
      expect(await exited).toBe(0);
      const rows = out.split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, any>);
      expect(rows.length).toBeGreaterThanOrEqual(2);
      for (const r of rows) expect(r).toMatchObject({ Name: name, PIDs: '1' });
    } finally {
      tsrun(['rm', '-f', name]);
    }
  });

  it('a bundle\'s linux.resources, linux.cgroupsPath and cgroup mount are honoured', () => {
    const dir = mkdtempSync(join(tmpdir(), 'tsrun-cg-bundle-'));
    try {
      cpSync(testEnv().rootfs.busybox, join(dir, 'rootfs'), { recursive: true, verbatimSymlinks: true });
      const pidsMax = v1('pids') ? '/sys/fs/cgroup/pids/pids.max' : '/sys/fs/cgroup/pids.max';
      const config = {
        ociVersion: '1.2.0',
        process: { user: { uid: 0, gid: 0 }, args: ['sh', '-c', `cat ${pidsMax}; grep -c . /proc/self/cgroup`], env: ['PATH=/bin'], cwd: '/' },
        root: { path: 'rootfs' },
        mounts: [
          { destination: '/proc', type: 'proc', source: 'proc' },
          { destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['ro', 'nosuid', 'nodev', 'noexec'] },
          { destination: '/sys/fs/cgroup', type: 'cgroup', source: 'cgroup', options: ['ro', 'nosuid', 'nodev', 'noexec'] },
        ],
        linux: { namespaces: [{ type: 'pid' }, { type: 'mount' }, { type: 'cgroup' }], cgroupsPath: `${PARENT}/bundle`, resources: { pids: { limit: 33 } } },
      };
      writeFileSync(join(dir, 'config.json'), JSON.stringify(config));
      const r = tsrun(['run', '--rm', '--bundle', dir]);
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      expect(r.stdout.split('\n')[0]).toBe('33');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('--device-read-bps / --device-write-iops resolve the device and land in the throttle files', () => {
    // any block device the host has: /sys/dev/block/MAJ:MIN/uevent names its /dev node
    const majmin = readdirSync('/sys/dev/block').sort()[0]!;
    const devname = /^DEVNAME=(.+)$/m.exec(readFileSync(`/sys/dev/block/${majmin}/uevent`, 'utf8'))![1]!;
    const v1io = v1('blkio');
    const files = v1io ? '/sys/fs/cgroup/blkio/blkio.throttle.read_bps_device /sys/fs/cgroup/blkio/blkio.throttle.write_iops_device' : '/sys/fs/cgroup/io.max';
    const r = tsrun(['run', '--rm', '--device-read-bps', `/dev/${devname}:1mb`, '--device-write-iops', `/dev/${devname}:100`, '--cgroup-parent', PARENT, 'busybox', 'cat', ...files.split(' ')]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    if (v1io) expect(r.stdout).toBe(`${majmin} 1048576\n${majmin} 100\n`);
    else expect(r.stdout).toMatch(new RegExp(`^${majmin} rbps=1048576 wbps=max riops=max wiops=100`));
  });

  it('bad input: exit 125, one line naming the flag, no cgroup created', () => {
    const cases: [string[], RegExp][] = [
      [['--memory', '12xyz'], /^tsrun: --memory: invalid size "12xyz"/],
      [['--memory', '-1'], /^tsrun: --memory: invalid size/],
      [['--pids-limit', 'many'], /^tsrun: --pids-limit: invalid integer/],
      [['--cpus', '99'], /^tsrun: --cpus: range of CPUs is from 0.01 to/],
      [['--cpus', '0.5', '--cpu-quota', '20000'], /^tsrun: --cpu-quota: conflicts with --cpus/],
      [['--cpu-shares', '-3'], /^tsrun: --cpu-shares: must not be negative/],
      [['--cpuset-cpus', '5'], /^tsrun: --cpuset-cpus: requested CPUs 5 not available/],
      [['--cgroup-parent', '../..'], /^tsrun: --cgroup-parent: "\.\.\/\.\." leaves the cgroup hierarchy/],
      [['--memory-swap', '10m', '-m', '32m'], /^tsrun: linux.resources.memory.swap: .*--memory-swap ≥ --memory/],
      [['--blkio-weight', '5'], /^tsrun: --blkio-weight: range of blkio weight is from 10 to 1000/],
    ];
    for (const [flags, msg] of cases) {
      const r = tsrun(['run', '--rm', ...(flags[0] === '--cgroup-parent' ? [] : ['--cgroup-parent', PARENT]), ...flags, 'busybox', 'true']);
      expect(r.code, flags.join(' ')).toBe(125);
      expect(r.stderr, flags.join(' ')).toMatch(msg);
      expect(r.stderr.trim().split('\n'), flags.join(' ')).toHaveLength(1);
      expect(childCgroups()).toEqual([]);
    }
  });

  it('a limit this host cannot honour is refused naming controller and mode', () => {
    // this machine's blkio has no weight file (no BFQ); on a host with one, the limit applies
    const w = hostLayout().controllers['blkio'];
    const hasWeight = w && (existsSync(join(w.mountPoint, 'blkio.weight')) || existsSync(join(w.mountPoint, 'blkio.bfq.weight')));
    const r = tsrun(['run', '--rm', '--blkio-weight', '300', '--cgroup-parent', PARENT, 'busybox', 'true']);
    if (hasWeight || !w) return;
    expect(r.code).toBe(125);
    expect(r.stderr).toMatch(/blkio controller here has no weight file .*cgroup mode (hybrid|v1)/);
  });
});
