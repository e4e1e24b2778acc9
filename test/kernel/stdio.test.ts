import { spawn, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, closeSync, cpSync, mkdtempSync, openSync, readFileSync, readlinkSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, expect, it } from 'vitest';
import { BIN, describeKernel, leaks, testEnv, tsrun, tsrunEnvVars } from './helpers.js';

// Design rule 4: the caller's fds stay on the host. A container handed tsrun's own stdout
// can reopen it through /proc/self/fd/1 (the magic link reaches the inode whatever mode it
// was opened with): read what the file held before, chown it, make it setuid. The probe's
// `stdio-attack FD` tries exactly that and reports on a dup of its stderr; the canaries are
// private files in a temp dir, never a real host file.

const SECRET = `SECRET-${randomBytes(8).toString('hex')}`;
let dir: string;

interface Attack {
  op: string;
  fd: number;
  link: string;
  open: string;
  read: string;
  chown: string;
  chmod: string;
  write: string;
}

function attackOf(text: string): Attack {
  const line = text.split(/\r?\n/).find((l) => l.includes('"op":"stdio-attack"'));
  if (!line) throw new Error(`no stdio-attack report in ${JSON.stringify(text)}`);
  return JSON.parse(line.slice(line.indexOf('{'))) as Attack;
}

/** A private file holding a secret, mode 0640, owned by root. */
function canary(name: string): string {
  const p = join(dir, name);
  writeFileSync(p, `${SECRET}\n`);
  chmodSync(p, 0o640);
  return p;
}

function expectUntouched(p: string): void {
  const st = statSync(p);
  expect({ mode: (st.mode & 0o7777).toString(8), uid: st.uid, gid: st.gid }).toEqual({ mode: '640', uid: 0, gid: 0 });
  expect(readFileSync(p, 'utf8')).toBe(`${SECRET}\n`);
}

/** bin/tsrun with fd 0 and fd 1 as given (numbers: open fds of this process), stderr a pipe. */
function tsrunWith(args: string[], stdin: 'ignore' | 'pipe' | number, stdout: 'pipe' | number, input?: Buffer | string) {
  const r = spawnSync(BIN, args, { env: tsrunEnvVars(), stdio: [stdin, stdout, 'pipe'], ...(input !== undefined ? { input } : {}), timeout: 60_000, maxBuffer: 256 << 20 });
  return { code: r.status, signal: r.signal, stdout: r.stdout as Buffer | null, stderr: r.stderr.toString('utf8') };
}

describeKernel('stdio: the caller\'s fds stay on the host (design rule 4)', () => {
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'tsrun-stdio-'));
  });
  afterEach(() => {
    for (const c of JSON.parse(tsrun(['ps', '-a', '--format', 'json']).stdout || '[]')) tsrun(['rm', '-f', c.id]);
  });
  afterAll(() => {
    rmSync(dir, { recursive: true, force: true });
    expect(leaks()).toEqual([]);
  });

  it('stdout redirected to a host file: the container gets a pipe, and cannot read, chown or chmod the file', () => {
    const c = canary('stdout');
    const fd = openSync(c, 'a'); // O_APPEND: the earlier content stays, as `>>` would
    const r = tsrunWith(['run', '--rm', 'probe', '/probe', 'stdio-attack', '1'], 'ignore', fd);
    closeSync(fd);
    const a = attackOf(r.stderr);
    expect(a.link).toMatch(/^pipe:\[\d+\]$/);
    expect(r.stderr).not.toContain(SECRET);
    expectUntouched(c);
    expect(r.code).toBe(0);
  });

  it('run -i with stdin a host file: the container reads a pipe, and cannot write, chown or chmod the file', () => {
    const c = canary('stdin');
    const fd = openSync(c, 'r');
    const r = tsrunWith(['run', '-i', '--rm', 'probe', '/probe', 'stdio-attack', '0', 'write'], fd, 'pipe');
    closeSync(fd);
    const a = attackOf(r.stderr);
    expect(a.link).toMatch(/^pipe:\[\d+\]$/);
    expectUntouched(c);
    expect(r.code).toBe(0);
  });

  it('on a terminal: -i does not hand the container the terminal, nor does stdout without -t', () => {
    // script(1) gives tsrun a pty of its own as 0, 1 and 2 (a private one, made for this test)
    const env = tsrunEnvVars();
    const sh = (args: string) => spawnSync('script', ['-q', '-e', '-c', `${BIN} ${args}`, '/dev/null'], { env, encoding: 'utf8', timeout: 60_000, input: '' });
    const inp = sh('run -i --rm probe /probe stdio-attack 0');
    expect(attackOf(inp.stdout).link).toMatch(/^pipe:\[\d+\]$/);
    const out = sh('run --rm probe /probe stdio-attack 1');
    expect(attackOf(out.stdout).link).toMatch(/^pipe:\[\d+\]$/);
    expect(inp.status).toBe(0);
    expect(out.status).toBe(0);
  });

  it('exec in the foreground relays too', () => {
    const id = tsrun(['run', '-d', 'probe', '/probe', 'sleep', '30']).stdout.trim();
    const c = canary('exec');
    const fd = openSync(c, 'a');
    const r = tsrunWith(['exec', id, '/probe', 'stdio-attack', '1'], 'ignore', fd);
    closeSync(fd);
    expect(attackOf(r.stderr).link).toMatch(/^pipe:\[\d+\]$/);
    expectUntouched(c);
    expect(r.code).toBe(0);
  });

  it('exec: a background process holding the pipe after the command exited does not keep tsrun waiting', () => {
    const id = tsrun(['run', '-d', 'busybox', 'sleep', '30']).stdout.trim();
    const t0 = Date.now();
    const r = tsrun(['exec', id, 'sh', '-c', 'sleep 8 & echo hi; exit 5']);
    const ms = Date.now() - t0;
    expect(r).toMatchObject({ code: 5, stdout: 'hi\n', stderr: '' });
    // the pipes stay open for 8 s; tsrun stops after 1 s of silence
    expect(ms).toBeLessThan(6000);
  });

  it('run -d: the container holds the monitor\'s pipes, not the caller\'s stdout', () => {
    const out = join(dir, 'detached-out');
    const fd = openSync(out, 'w');
    const r = tsrunWith(['run', '-d', '--name', 'stdio-d', 'probe', '/probe', 'sleep', '30'], 'ignore', fd);
    closeSync(fd);
    expect(r.code).toBe(0);
    const [info] = JSON.parse(tsrun(['inspect', 'stdio-d']).stdout) as { State: { Pid: number }; Monitor: number }[];
    const pid = info!.State.Pid;
    const links = [0, 1, 2].map((n) => readlinkSync(`/proc/${pid}/fd/${n}`));
    expect(links).toEqual(['/dev/null', expect.stringMatching(/^pipe:\[\d+\]$/), expect.stringMatching(/^pipe:\[\d+\]$/)]);
    // the monitor's own: it holds the read ends of the same two pipes
    const held = spawnSync('ls', ['-l', `/proc/${info!.Monitor}/fd`], { encoding: 'utf8' }).stdout;
    expect(held).toContain(links[1]);
    expect(held).toContain(links[2]);
  });

  it('OCI create keeps passing the caller\'s fds: they are the engine\'s own pipes (docs/stdio.md)', async () => {
    const e = testEnv();
    const b = mkdtempSync(join(tmpdir(), 'tsrun-stdio-oci-'));
    try {
      cpSync(e.rootfs.probe, join(b, 'rootfs'), { recursive: true, verbatimSymlinks: true });
      writeFileSync(
        join(b, 'config.json'),
        JSON.stringify({
          ociVersion: '1.2.0',
          process: { args: ['/probe', 'sleep', '30'], cwd: '/', user: { uid: 0, gid: 0 }, env: ['PATH=/bin'] },
          root: { path: 'rootfs' },
          mounts: [{ destination: '/proc', type: 'proc', source: 'proc' }],
          linux: { namespaces: [{ type: 'pid' }, { type: 'mount' }] },
        }),
      );
      // what conmon or containerd-shim pass stands in as a file here (a pipe of the test would
      // keep spawnSync waiting for the created init, which holds it)
      const engineOut = join(b, 'engine-out');
      const fd = openSync(engineOut, 'w');
      const r = spawnSync(BIN, ['create', '--bundle', b, '--pid-file', join(b, 'pid'), 'stdio-oci'], { env: tsrunEnvVars(), stdio: ['ignore', fd, fd] });
      closeSync(fd);
      expect(r.status).toBe(0);
      const pid = Number(readFileSync(join(b, 'pid'), 'utf8'));
      expect(readlinkSync(`/proc/${pid}/fd/1`)).toBe(engineOut);
    } finally {
      tsrun(['delete', '--force', 'stdio-oci']);
      rmSync(b, { recursive: true, force: true });
    }
  });

  it('echo hi | tsrun run -i busybox cat: stdin is relayed and closed at its end', () => {
    const r = tsrun(['run', '-i', '--rm', 'busybox', 'cat'], { input: 'hi\n' });
    expect(r).toMatchObject({ code: 0, stdout: 'hi\n', stderr: '' });
    // without -i the container's stdin is /dev/null, as before
    expect(tsrun(['run', '--rm', 'busybox', 'readlink', '/proc/self/fd/0'], { input: 'x' }).stdout).toBe('/dev/null\n');
  });

  it('50 MB of random bytes in and out through cat: complete and byte-exact', () => {
    const data = randomBytes(50 << 20);
    const r = tsrunWith(['run', '-i', '--rm', 'busybox', 'cat'], 'pipe', 'pipe', data);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout!.length).toBe(data.length);
    expect(createHash('sha256').update(r.stdout!).digest('hex')).toBe(createHash('sha256').update(data).digest('hex'));
  });

  it('exit codes as before; stdout and stderr stay apart', () => {
    const r = tsrun(['run', '--rm', 'busybox', 'sh', '-c', 'echo out; echo err >&2; exit 7']);
    expect(r).toMatchObject({ code: 7, stdout: 'out\n', stderr: 'err\n' });
    expect(tsrun(['run', '--rm', 'busybox', 'nosuchcommand']).code).toBe(127);
  });

  it('a slow reader loses nothing: output the container wrote before it exited waits for the reader', () => {
    // 150 KB fits in the pipes and tsrun's buffer, so the container exits at once while the
    // reader sleeps for longer than tsrun waits for a silent pipe after the exit
    const want = spawnSync('bash', ['-c', 'head -c 150000 /dev/zero | cksum'], { encoding: 'utf8' }).stdout;
    const r = spawnSync('bash', ['-c', `${BIN} run --rm busybox sh -c 'head -c 150000 /dev/zero; exit 3' | (sleep 3; cksum); echo "tsrun \${PIPESTATUS[0]}"`], { env: tsrunEnvVars(), encoding: 'utf8', timeout: 30_000 });
    expect(r.error).toBeUndefined();
    expect(r.stdout).toBe(`${want}tsrun 3\n`);
  });

  it('a reader that goes away ends the container\'s writes (EPIPE; as PID 1, busybox yes ignores SIGPIPE)', () => {
    const r = spawnSync('bash', ['-c', `${BIN} run --rm busybox yes | head -n 2; echo "tsrun \${PIPESTATUS[0]}"`], { env: tsrunEnvVars(), encoding: 'utf8', timeout: 20_000 });
    expect(r.error).toBeUndefined();
    expect(r.stdout).toBe('y\ny\ntsrun 1\n');
  });
});
