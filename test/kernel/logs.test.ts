import { spawnSync } from 'node:child_process';
import { appendFileSync, closeSync, existsSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, expect, it } from 'vitest';
import { BIN, describeKernel, leaks, testEnv, tsrun, tsrunEnvVars } from './helpers.js';
import { until } from '../until.js';

// Issue 12.7: a detached container's json-file log, as docker's json-file driver keeps it —
// in the data root (not the tmpfs state root), rotated by max-size/max-file, read from the
// end for --tail, and a damaged record skipped with a warning instead of hiding the rest.

const logOf = (id: string) => join(testEnv().data, 'containers', id, 'container-json.log');
/** where the log is: the data root (or, before issue 12.7, the state root) */
const anyLogOf = (id: string) => [logOf(id), join(testEnv().root, id, 'container.log')].find((p) => existsSync(p)) ?? logOf(id);
const stopped = (id: string) => JSON.parse(tsrun(['inspect', id]).stdout)[0].State.Status === 'stopped';

describeKernel('logs: json-file in the data root, rotation, --tail from the end, damaged records', () => {
  const ids: string[] = [];
  afterEach(() => {
    for (const id of ids.splice(0)) tsrun(['rm', '-f', id]);
  });
  afterAll(() => expect(leaks()).toEqual([]));

  function detached(args: string[]): string {
    const r = tsrun(['run', '-d', ...args]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const id = r.stdout.trim();
    ids.push(id);
    return id;
  }

  it('lives in the data root beside the layer, not in the state root', async () => {
    const id = detached(['busybox', 'echo', 'hello']);
    await until(() => stopped(id));
    expect(readFileSync(logOf(id), 'utf8')).toContain('"log":"hello\\n"');
    const inState = spawnSync('grep', ['-rl', '"stream"', join(testEnv().root, id)], { encoding: 'utf8' }).stdout;
    expect(inState).toBe('');
    expect(tsrun(['logs', id]).stdout).toBe('hello\n');
  });

  it('a partial last record (a full disk) is skipped with a warning; the lines before it still print', async () => {
    const id = detached(['busybox', 'sh', '-c', 'echo one; echo two; echo three']);
    await until(() => stopped(id));
    appendFileSync(anyLogOf(id), '{"log":"partial');
    const r = tsrun(['logs', id]);
    expect(r.stdout).toBe('one\ntwo\nthree\n');
    expect(r.stderr).toMatch(/^tsrun: warning: skipped a damaged log record at .*container-json\.log .*"\{\\"log\\":\\"partial"\n$/);
    expect(r.code).toBe(0);
    // a damaged line in the middle too, and --tail across it
    appendFileSync(anyLogOf(id), '\n{"log":"four\\n","stream":"stdout","time":"2026-01-01T00:00:00Z"}\n');
    expect(tsrun(['logs', id]).stdout).toBe('one\ntwo\nthree\nfour\n');
    expect(tsrun(['logs', '--tail', '2', id]).stdout).toBe('four\n');
  });

  it('--tail reads from the end: 300 MB of log, the last 2 lines, with little memory', async () => {
    const id = detached(['busybox', 'echo', 'first']);
    await until(() => stopped(id));
    // grow the log as a chatty container would, in big appends
    const line = JSON.stringify({ log: 'x'.repeat(200) + '\n', stream: 'stdout', time: '2026-01-01T00:00:00.000000000Z' }) + '\n';
    const block = Buffer.from(line.repeat(Math.floor((4 << 20) / line.length)));
    const fd = openSync(anyLogOf(id), 'a');
    for (let written = 0; written < 300 << 20; written += block.length) writeSync(fd, block);
    writeSync(fd, JSON.stringify({ log: 'last-but-one\n', stream: 'stdout', time: 't' }) + '\n' + JSON.stringify({ log: 'last\n', stream: 'stderr', time: 't' }) + '\n');
    closeSync(fd);
    expect(statSync(anyLogOf(id)).size).toBeGreaterThan(300 << 20);
    // peak RSS of the tsrun process, from its parent's rusage (ru_maxrss, KiB)
    const py = spawnSync(
      'python3',
      ['-c', 'import resource,subprocess,sys; r=subprocess.run(sys.argv[1:], capture_output=True); print(r.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.stdout.write(r.stdout.decode()); sys.stderr.write(r.stderr.decode())', BIN, 'logs', '--tail', '2', id],
      { env: tsrunEnvVars(), encoding: 'utf8' },
    );
    const [status, rssKiB, ...out] = py.stdout.split(/\s|\n/);
    expect(status).toBe('0');
    expect(out.join('\n').trim()).toBe('last-but-one');
    expect(py.stderr).toBe('last\n');
    // node alone is about 40 MB here; reading the whole file needed more than 300 MB
    expect(Number(rssKiB)).toBeLessThan(120 * 1024);
  });

  it('--log-opt max-size/max-file rotate as docker json-file does; logs reads across the files', async () => {
    const id = detached(['--log-opt', 'max-size=2k', '--log-opt', 'max-file=3', 'busybox', 'sh', '-c', 'i=0; while [ $i -lt 300 ]; do echo line-$i; i=$((i+1)); done']);
    await until(() => stopped(id));
    const dir = join(testEnv().data, 'containers', id);
    const files = readdirSync(dir).filter((f) => f.startsWith('container-json.log')).sort();
    expect(files).toEqual(['container-json.log', 'container-json.log.1', 'container-json.log.2']);
    for (const f of files) expect(statSync(join(dir, f)).size).toBeLessThanOrEqual(2048);
    const lines = tsrun(['logs', id]).stdout.trim().split('\n');
    // the newest lines, in order and without a gap, ending with the last one written
    expect(lines.at(-1)).toBe('line-299');
    const first = Number(lines[0]!.slice(5));
    expect(lines).toEqual(Array.from({ length: 300 - first }, (_, i) => `line-${first + i}`));
    expect(lines.length).toBeGreaterThan(40);
    expect(lines.length).toBeLessThan(100);
    expect(tsrun(['logs', '--tail', '3', id]).stdout).toBe('line-297\nline-298\nline-299\n');
  });

  it('logs -f follows through rotations without losing a line', async () => {
    const id = detached(['--log-opt', 'max-size=1k', '--log-opt', 'max-file=5', 'busybox', 'sh', '-c', 'i=0; while [ $i -lt 120 ]; do echo f-$i; i=$((i+1)); sleep 0.01; done']);
    const r = spawnSync(BIN, ['logs', '-f', id], { env: tsrunEnvVars(), encoding: 'utf8', timeout: 30_000 });
    expect(r.status).toBe(0);
    expect(r.stdout.trim().split('\n')).toEqual(Array.from({ length: 120 }, (_, i) => `f-${i}`));
  });

  it('the config file\'s "log-opts" apply; bad options are refused by name, leaving nothing', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tsrun-logcfg-'));
    try {
      const cfg = join(dir, 'config.json');
      writeFileSync(cfg, JSON.stringify({ 'log-opts': { 'max-size': '1k', 'max-file': '2' } }));
      const id = detached(['--config', cfg, 'busybox', 'sh', '-c', 'i=0; while [ $i -lt 100 ]; do echo c-$i; i=$((i+1)); done']);
      await until(() => stopped(id));
      expect(existsSync(logOf(id) + '.1')).toBe(true);
      expect(existsSync(logOf(id) + '.2')).toBe(false);

      const before = readdirSync(testEnv().root).length;
      for (const [args, msg] of [
        [['--log-opt', 'max-size=abc'], '--log-opt max-size: "abc" is not a size'],
        [['--log-opt', 'max-file=3'], '--log-opt max-file: needs max-size too'],
        [['--log-opt', 'compress=true'], '--log-opt compress: unknown log option'],
        [['--log-opt', 'nonsense'], '--log-opt "nonsense": expected KEY=VALUE'],
      ] as const) {
        const r = tsrun(['run', '-d', ...args, 'busybox', 'true']);
        expect(r.code).toBe(125);
        expect(r.stderr).toContain(msg);
        expect(r.stderr.trim().split('\n')).toHaveLength(1);
      }
      writeFileSync(cfg, JSON.stringify({ 'log-opts': { 'max-size': 10 } }));
      const bad = tsrun(['run', '-d', '--config', cfg, 'busybox', 'true']);
      expect(bad.code).toBe(125);
      expect(bad.stderr).toContain(`${cfg}: "log-opts": expected an object of strings`);
      expect(readdirSync(testEnv().root).length).toBe(before);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
