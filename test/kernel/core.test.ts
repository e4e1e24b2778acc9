import { createHash } from 'node:crypto';
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawn, spawnSync } from 'node:child_process';
import { afterAll, expect, it } from 'vitest';
import { defaultMaskedPaths, defaultReadonlyPaths } from '../../src/controls/masked-paths.js';
import { BIN, describeKernel, hostNs, leaks, probe, probeInfo, testEnv, tsrun, tsrunAsync, tsrunEnvVars } from './helpers.js';

describeKernel('core runtime on the real kernel', () => {
  afterAll(() => {
    expect(leaks()).toEqual([]);
  });

  it('runs a command and passes its output through', () => {
    const r = tsrun(['run', '--rm', 'busybox', 'echo', 'hello']);
    expect(r).toMatchObject({ code: 0, stdout: 'hello\n', stderr: '' });
  });

  it('makes the command PID 1 of its own namespaces, hostname = short id', () => {
    const info = probeInfo();
    expect(info.pid).toBe(1);
    expect(info.ppid).toBe(0);
    expect(info.hostname).toMatch(/^[0-9a-f]{12}$/);
    for (const ns of ['pid', 'mnt', 'uts', 'ipc', 'net', 'cgroup']) {
      expect(info.ns[ns], ns).not.toBe(hostNs(ns));
    }
    expect(probeInfo(['--hostname', 'web1']).hostname).toBe('web1');
  });

  it('cannot see host processes', () => {
    const r = tsrun(['run', '--rm', 'busybox', 'sh', '-c', 'ls /proc | grep -E "^[0-9]+$" | wc -l']);
    expect(r.code).toBe(0);
    // sh, ls, grep, wc: the pipeline itself, nothing of the host's hundreds of processes
    expect(Number(r.stdout.trim())).toBeLessThanOrEqual(5);
  });

  it('pivots into the image: overlay root, private /proc /dev /sys, no host mounts', () => {
    const info = probeInfo();
    const byPath = new Map<string, { type: string; options: string }>(info.mounts.map((m: any) => [m.path, m]));
    expect(byPath.get('/')?.type).toBe('overlay');
    expect(byPath.get('/proc')?.type).toBe('proc');
    expect(byPath.get('/dev')?.type).toBe('tmpfs');
    expect(byPath.get('/dev/pts')?.type).toBe('devpts');
    expect(byPath.get('/dev/shm')?.type).toBe('tmpfs');
    expect(byPath.get('/dev/mqueue')?.type).toBe('mqueue');
    expect(byPath.get('/sys')?.type).toBe('sysfs');
    expect(byPath.get('/sys')?.options).toMatch(/^ro,/);
    const allowed = new Set(['/', '/proc', '/dev', '/dev/pts', '/dev/shm', '/dev/mqueue', '/sys', '/etc/hostname', '/etc/hosts', '/etc/resolv.conf', ...['null', 'zero', 'full', 'random', 'urandom', 'tty'].map((d) => `/dev/${d}`), ...defaultMaskedPaths(), ...defaultReadonlyPaths()]);
    // the cgroups control adds /sys/fs/cgroup (and one mount per hierarchy on v1/hybrid), all read-only
    const cgroupMounts = info.mounts.filter((m: any) => m.path === '/sys/fs/cgroup' || m.path.startsWith('/sys/fs/cgroup/'));
    expect(cgroupMounts.length).toBeGreaterThan(0);
    for (const m of cgroupMounts) expect(m.options, m.path).toMatch(/^ro,/);
    expect(info.mounts.map((m: any) => m.path).filter((p: string) => !allowed.has(p) && !p.startsWith('/sys/fs/cgroup'))).toEqual([]);
  });

  it('leaves the container only fds 0-2', () => {
    const info = probeInfo();
    expect(info.fds.map((f: any) => f.fd)).toEqual([0, 1, 2]);
    expect(info.fds[0].target).toBe('/dev/null'); // no -i: stdin is /dev/null, as docker
  });

  it('starts the command with no blocked, ignored or caught signal (tsrun blocks all around its clone)', () => {
    // native/spawn.h blocks every signal while the child shares tsrun's memory; Node ignores
    // SIGPIPE and catches others: none of that may reach the container (signal(7), execve(2))
    const r = tsrun(['run', '--rm', 'busybox', 'grep', '-E', '^Sig(Blk|Ign|Cgt):', '/proc/self/status']);
    expect(r.code).toBe(0);
    expect(r.stdout.trim().split('\n').map((l) => l.replace(/\s+/g, ' '))).toEqual(['SigBlk: 0000000000000000', 'SigIgn: 0000000000000000', 'SigCgt: 0000000000000000']);
  });

  it('brings loopback up in its own network namespace; --network host shares the host\'s', () => {
    const r = tsrun(['run', '--rm', 'busybox', 'sh', '-c', 'ls /sys/class/net; cat /sys/class/net/lo/operstate; ping -c1 -W1 127.0.0.1 >/dev/null && echo ping-ok']);
    expect(r.stdout).toBe('lo\nunknown\nping-ok\n');
    expect(probeInfo(['--network', 'host']).ns.net).toBe(hostNs('net'));
  });

  it('generates /etc/hostname, /etc/hosts and /etc/resolv.conf', () => {
    const r = tsrun(['run', '--rm', '--hostname', 'box', 'busybox', 'sh', '-c', 'cat /etc/hostname; grep box /etc/hosts']);
    expect(r.stdout).toBe('box\n127.0.1.1\tbox\n');
  });

  it('runs an image of one static binary and nothing else (FROM scratch, as hello-world): the mount targets it lacks are made', () => {
    // no /etc, /proc, /dev or /sys in the image: the bind targets /etc/hostname, /etc/hosts
    // and /etc/resolv.conf need their directory made first, in the container's own layer
    const dir = mkdtempSync(join(testEnv().base, 'scratch-'));
    const name = `scratch-${process.pid}:1`;
    try {
      cpSync(join(testEnv().rootfs.probe, 'probe'), join(dir, 'root', 'probe'));
      expect(tsrun(['import', join(dir, 'root'), name]).code).toBe(0);
      for (const flags of [[], ['--read-only']]) {
        const r = tsrun(['run', '--rm', ...flags, '--hostname', 'bare', name, '/probe', 'info']);
        expect(r.stderr, flags.join(' ')).toBe('');
        expect(r.code).toBe(0);
        const info = JSON.parse(r.stdout.split('\n')[0]!);
        expect(info.hostname).toBe('bare');
        const paths = info.mounts.map((m: any) => m.path);
        for (const p of ['/', '/proc', '/dev', '/sys', '/etc/hostname', '/etc/hosts', '/etc/resolv.conf']) expect(paths, p).toContain(p);
      }
      // the same for a -v of a file into a directory the image lacks, as docker does
      writeFileSync(join(dir, 'f'), 'bound\n');
      expect(tsrun(['run', '--rm', '-v', `${join(dir, 'f')}:/made/for/f:ro`, 'busybox', 'cat', '/made/for/f'])).toMatchObject({ code: 0, stdout: 'bound\n', stderr: '' });
    } finally {
      tsrun(['rmi', name]);
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('keeps the image unchanged: writes go to a per-container layer removed with it', () => {
    const e = testEnv();
    const r = tsrun(['run', '--rm', 'busybox', 'sh', '-c', 'echo x > /etc/written && rm /bin/ls && echo done']);
    expect(r.stdout).toBe('done\n');
    expect(existsSync(join(e.layers.busybox, 'etc', 'written'))).toBe(false);
    expect(existsSync(join(e.layers.busybox, 'bin', 'ls'))).toBe(true);
    expect(tsrun(['run', '--rm', 'busybox', 'sh', '-c', 'ls /etc/written /bin/ls 2>&1']).stdout).toMatch(/No such file.*\n\/bin\/ls\n/);
  });

  it('--read-only: writes to / fail with EROFS, --tmpfs paths stay writable', () => {
    expect(probe(['--read-only'], ['write', '/x']).lines[0]).toEqual({ op: 'write', errno: 'EROFS' });
    expect(probe([], ['write', '/x']).lines[0]).toEqual({ op: 'write', errno: '0' });
    expect(probe(['--read-only', '--tmpfs', '/scratch'], ['write', '/scratch/x']).lines[0]).toEqual({ op: 'write', errno: '0' });
  });

  it('-v HOST:CTR binds a host directory; :ro is really read-only', () => {
    const dir = mkdtempSync(join(tmpdir(), 'tsrun-vol-'));
    try {
      expect(probe(['-v', `${dir}:/data`], ['write', '/data/f']).lines[0]).toEqual({ op: 'write', errno: '0' });
      expect(readFileSync(join(dir, 'f'), 'utf8')).toBe('probe\n');
      expect(probe(['-v', `${dir}:/data:ro`], ['write', '/data/g']).lines[0]).toEqual({ op: 'write', errno: 'EROFS' });
      expect(existsSync(join(dir, 'g'))).toBe(false);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('runs as the user given with -u (name from the image, or uid:gid) in -w', () => {
    expect(probeInfo(['-u', 'nobody'])).toMatchObject({ uid: 65534, gid: 65534, euid: 65534 });
    expect(probeInfo(['-u', '1000:100', '-w', '/work'])).toMatchObject({ uid: 1000, gid: 100, groups: [100], cwd: '/work' });
  });

  it('passes the environment: defaults, -e, --env-file', () => {
    const dir = mkdtempSync(join(tmpdir(), 'tsrun-env-'));
    try {
      writeFileSync(join(dir, 'env'), '# comment\nFROM_FILE=1\n');
      const r = tsrun(['run', '--rm', '-e', 'A=b c', '--env-file', join(dir, 'env'), '--hostname', 'h', 'busybox', 'env']);
      const env = r.stdout.split('\n').sort();
      expect(env).toEqual(expect.arrayContaining(['A=b c', 'FROM_FILE=1', 'HOSTNAME=h', 'HOME=/root', 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin']));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('--entrypoint replaces the image entrypoint; arguments replace Cmd', () => {
    expect(tsrun(['run', '--rm', '--entrypoint', '/bin/echo', 'busybox', 'a', 'b']).stdout).toBe('a b\n');
    expect(tsrun(['run', '--rm', 'probe']).stdout).toMatch(/^\{"op":"info"/); // the image's Cmd
  });

  it('pipes stdin with -i', () => {
    expect(tsrun(['run', '--rm', '-i', 'busybox', 'cat'], { input: 'through\n' }).stdout).toBe('through\n');
    expect(tsrun(['run', '--rm', 'busybox', 'cat'], { input: 'ignored\n' }).stdout).toBe('');
  });

  it('-t gives a pty of the container\'s own devpts as controlling terminal, with TERM set', () => {
    // script(1) gives tsrun a terminal, as a user's shell would
    const cmd = `${BIN} run --rm -t busybox sh -c 'tty; [ -t 0 ] && [ -t 1 ] && echo isatty; echo $TERM; ls -l /proc/self/fd/0'`;
    const r = spawnSync('script', ['-qec', cmd, '/dev/null'], { encoding: 'utf8', env: tsrunEnvVars(), timeout: 20_000 });
    // through the pty, tsrun's stderr is in stdout: the message says why if it fails
    expect(r.status, r.stdout).toBe(0);
    const lines = r.stdout.replace(/\r/g, '').split('\n');
    expect(lines[0]).toBe('/dev/pts/0');
    expect(lines[1]).toBe('isatty');
    expect(lines[2]).toBe('xterm');
    expect(lines[3]).toMatch(/-> \/dev\/pts\/0$/);
  });

  it('-t, 3 × 8 runs side by side: each ends with its command\'s status (the pty master was closed twice, the second time another fd: the container\'s lock)', async () => {
    const one = () =>
      new Promise<{ code: number | null; out: string }>((res) => {
        const c = spawn('script', ['-qec', `${BIN} run --rm -t busybox sh -c 'tty; exit 3'`, '/dev/null'], { env: tsrunEnvVars(), stdio: ['ignore', 'pipe', 'pipe'] });
        let out = '';
        c.stdout.on('data', (d) => (out += String(d)));
        c.on('close', (code) => res({ code, out: out.replace(/\r/g, '') }));
      });
    const loop = async () => {
      const got: { code: number | null; out: string }[] = [];
      for (let i = 0; i < 8; i++) got.push(await one());
      return got;
    };
    const all = (await Promise.all([loop(), loop(), loop()])).flat();
    expect(all.filter((r) => r.code !== 3 || r.out !== '/dev/pts/0\n')).toEqual([]);
  }, 120_000);

  it('-it: keystrokes reach the shell, Ctrl-C interrupts its foreground job, exit ends it', async () => {
    // script(1) is the user's terminal; we type into it over time
    const cmd = `${BIN} run --rm -it busybox sh`;
    const term = spawn('script', ['-qec', cmd, '/dev/null'], { env: { ...tsrunEnvVars(), TERM: 'xterm' }, stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    term.stdout.on('data', (c) => (out += c));
    const exited = new Promise<number | null>((r) => term.on('exit', r));
    const waitFor = async (s: string) => {
      for (let i = 0; i < 200 && !out.includes(s); i++) await new Promise((r) => setTimeout(r, 25));
      expect(out).toContain(s);
    };
    term.stdin.write('echo $((6*7))\r');
    await waitFor('42');
    const t0 = Date.now();
    term.stdin.write('sleep 30; echo not-interrupted\r');
    await new Promise((r) => setTimeout(r, 300));
    term.stdin.write('\x03'); // Ctrl-C: the container's line discipline sends SIGINT to sleep
    term.stdin.write('echo after-$((1+1))\r');
    await waitFor('after-2');
    expect(Date.now() - t0).toBeLessThan(10_000);
    term.stdin.write('exit 3\r');
    expect(await exited).toBe(3);
    expect(out).not.toMatch(/(^|\n)not-interrupted/); // the typed line is echoed; its output never came
  });

  it('exits as docker does: own code, 126, 127, 125', () => {
    expect(tsrun(['run', '--rm', 'busybox', 'sh', '-c', 'exit 3']).code).toBe(3);
    const nf = tsrun(['run', '--rm', 'busybox', 'no-such-command']);
    expect(nf.code).toBe(127);
    expect(nf.stderr).toMatch(/no-such-command.*not found/);
    const ne = tsrun(['run', '--rm', 'busybox', '/etc/passwd']);
    expect(ne.code).toBe(126);
    expect(ne.stderr).toMatch(/EACCES/);
    expect(tsrun(['run', '--bogus-flag', 'busybox']).code).toBe(125);
    const ni = tsrun(['run', 'no-such-image']);
    expect(ni.code).toBe(125);
    expect(ni.stderr).toMatch(/unknown image "no-such-image": local images: .*busybox/);
  });

  it('forwards SIGTERM to PID 1 and reports 128+N when the container dies of a signal', async () => {
    const child = tsrunAsync(['run', '--rm', 'busybox', 'sh', '-c', 'trap "echo got-term; exit 42" TERM; echo ready; while :; do sleep 0.1; done']);
    let out = '';
    await new Promise<void>((resolve) => child.stdout.on('data', (c) => ((out += c), out.includes('ready') && resolve())));
    child.kill('SIGTERM');
    const code = await new Promise((r) => child.on('exit', r));
    expect(out).toContain('got-term');
    expect(code).toBe(42);

    const killed = tsrunAsync(['run', '--rm', 'busybox', 'sh', '-c', 'echo ready; exec sleep 30']);
    await new Promise<void>((resolve) => killed.stdout.on('data', () => resolve()));
    // the container's PID 1 seen from the host: tsrun's child
    const initPid = Number(readFileSync(`/proc/${killed.pid}/task/${killed.pid}/children`, 'utf8').trim().split(' ')[0]);
    process.kill(initPid, 'SIGKILL');
    expect(await new Promise((r) => killed.on('exit', r))).toBe(137);
  });

  it('refuses a #!/proc/self/exe script: no host binary runs, none is writable (CVE-2019-5736)', () => {
    const node = process.execPath;
    const before = createHash('sha256').update(readFileSync(node)).digest('hex');
    // The attack of lab 1: the container's command is a script whose interpreter is
    // /proc/self/exe, i.e. whatever binary the runtime's process is while it execs.
    const dir = mkdtempSync(join(tmpdir(), 'tsrun-evil-'));
    writeFileSync(join(dir, 'evil'), '#!/proc/self/exe\n', { mode: 0o755 });
    const r = tsrun(['run', '--rm', '-v', `${dir}:/x`, 'busybox', '/x/evil']);
    rmSync(dir, { recursive: true, force: true });
    // that binary is tsrun-init's sealed memfd, which refuses to run as an interpreter
    expect(r.stderr).toContain("tsrun-init: this is tsrun's container init");
    expect(r.code).toBe(126);
    expect(createHash('sha256').update(readFileSync(node)).digest('hex')).toBe(before);
  });

  it('rejects bad bundles naming the field, and leaves nothing behind', () => {
    const dir = mkdtempSync(join(tmpdir(), 'tsrun-bundle-'));
    try {
      writeFileSync(join(dir, 'config.json'), JSON.stringify({ ociVersion: '1.2.0', process: { args: [], cwd: '/', user: { uid: 0, gid: 0 } }, root: { path: 'rootfs' }, linux: { namespaces: [] } }));
      const r = tsrun(['run', '--bundle', dir]);
      expect(r.code).toBe(125);
      expect(r.stderr).toContain('process.args');
      writeFileSync(join(dir, 'config.json'), '{ not json');
      expect(tsrun(['run', '--bundle', dir]).stderr).toMatch(/config.json: invalid JSON/);
      writeFileSync(join(dir, 'config.json'), JSON.stringify({ ociVersion: '1.2.0', process: { args: ['true'], cwd: '/', user: { uid: 0, gid: 0 } }, root: { path: 'missing' }, linux: { namespaces: [{ type: 'mount' }] } }));
      const m = tsrun(['run', '--bundle', dir]);
      expect(m.code).toBe(125);
      expect(m.stderr).toMatch(/root.path: .*missing: ENOENT/);
      expect(leaks()).toEqual([]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('runs an OCI bundle through the same path', () => {
    const e = testEnv();
    const dir = mkdtempSync(join(tmpdir(), 'tsrun-bundle-'));
    try {
      cpSync(e.rootfs.probe, join(dir, 'rootfs'), { recursive: true, verbatimSymlinks: true });
      const spec = {
        ociVersion: '1.2.0',
        process: { args: ['/probe', 'info'], cwd: '/', user: { uid: 0, gid: 0 }, env: ['PATH=/bin'] },
        root: { path: 'rootfs', readonly: true },
        hostname: 'bundled',
        mounts: [{ destination: '/proc', type: 'proc', source: 'proc' }],
        linux: { namespaces: [{ type: 'pid' }, { type: 'mount' }, { type: 'uts' }] },
      };
      writeFileSync(join(dir, 'config.json'), JSON.stringify(spec));
      const r = tsrun(['run', '--rm', '--bundle', dir]);
      expect(r.stderr).toBe('');
      const info = JSON.parse(r.stdout);
      expect(info).toMatchObject({ pid: 1, hostname: 'bundled' });
      expect(info.mounts.find((m: any) => m.path === '/').options).toMatch(/^ro,/);
      expect(info.ns.net).toBe(hostNs('net')); // not asked for: shared
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('refuses to run without root, saying so', () => {
    const r = spawnSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', join(import.meta.dirname, '..', '..', 'bin', 'tsrun'), 'run', 'busybox', 'true'], { encoding: 'utf8' });
    expect(r.status).toBe(125);
    expect(r.stderr).toMatch(/needs root/);
  });

  it('removes the container directory after exit', () => {
    const e = testEnv();
    tsrun(['run', '--rm', 'busybox', 'true']);
    const cdir = join(e.data, 'containers');
    expect(existsSync(cdir) ? readdirSync(cdir) : []).toEqual([]);
  });
});
