import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { ROOT, describeKernel, leaks, tsrunEnvVars } from './helpers.js';

// Every "See it yourself" block in docs/*.md runs as written (issue 13 item 4). The fenced
// block(s) under such a heading are run with bash, as root, in the test's state and data
// directories, from a scratch directory whose bin/, rootfs/ and build/ point into the
// project (so `sudo ./bin/tsrun` and files the block writes, like p.json, stay out of the
// tree); `sudo` is the command itself and `tsrun` is bin/tsrun. A block that cannot run in
// a test says so just before it, visibly:  <!-- not run: REASON -->
// What counts as broken: the shell or tsrun not knowing a command, flag or image, a usage
// error, an internal error, or a block that does not finish within a minute.

export interface DocBlock {
  file: string;
  heading: string;
  line: number;
  lang: string;
  code: string;
  skip?: string;
}

export function seeItYourselfBlocks(dir: string): DocBlock[] {
  const out: DocBlock[] = [];
  for (const file of readdirSync(dir).filter((f) => f.endsWith('.md')).sort()) {
    const lines = readFileSync(join(dir, file), 'utf8').split('\n');
    let heading = '';
    for (let i = 0; i < lines.length; i++) {
      const l = lines[i]!;
      const h = /^#{1,6}\s+(.*)$/.exec(l);
      if (h) {
        heading = h[1]!;
        continue;
      }
      const fence = /^```(\S*)\s*$/.exec(l);
      if (!fence) continue;
      const end = lines.findIndex((x, j) => j > i && /^```\s*$/.test(x));
      const code = lines.slice(i + 1, end).join('\n');
      if (/see it yourself/i.test(heading)) {
        const prev = lines.slice(Math.max(0, i - 3), i).reverse().find((x) => x.trim());
        const skip = prev ? /<!--\s*not run:\s*(.+?)\s*-->/.exec(prev)?.[1] : undefined;
        out.push({ file, heading, line: i + 1, lang: fence[1] ?? '', code, ...(skip ? { skip } : {}) });
      }
      i = end;
    }
  }
  return out;
}

const BROKEN = [
  /command not found/,
  /tsrun: internal error/,
  /tsrun: unknown option/,
  /tsrun: unknown command/,
  /tsrun: too many arguments/,
  /tsrun: missing required argument/,
  /unknown image/,
  /no such container/,
  /^Usage: tsrun/m,
];

const blocks = seeItYourselfBlocks(join(ROOT, 'docs'));
let scratch = '';
let prefix = '';
let hostPasswd = '';

describeKernel('docs: every "See it yourself" block runs as written', () => {
  beforeAll(() => {
    hostPasswd = readFileSync('/etc/passwd', 'utf8');
    scratch = mkdtempSync(join(tmpdir(), 'tsrun-docs-'));
    for (const d of ['bin', 'rootfs', 'build', 'node_modules', 'package.json', 'test']) symlinkSync(join(ROOT, d), join(scratch, d));
    // --userns-remap default in a block adds its user to a copy of the account files
    prefix = mkdtempSync(join(tmpdir(), 'tsrun-docs-ids-'));
    mkdirSync(join(prefix, 'etc'));
    for (const f of ['passwd', 'group', 'shadow', 'gshadow']) if (existsSync(`/etc/${f}`)) copyFileSync(`/etc/${f}`, join(prefix, 'etc', f));
  });
  afterAll(() => {
    rmSync(scratch, { recursive: true, force: true });
    rmSync(prefix, { recursive: true, force: true });
    expect(readFileSync('/etc/passwd', 'utf8')).toBe(hostPasswd);
    expect(leaks()).toEqual([]);
  });

  it('finds the blocks, each fenced as sh, and every skipped one gives its reason', () => {
    expect(blocks.length).toBeGreaterThan(20);
    expect(blocks.filter((b) => b.lang !== 'sh').map((b) => `${b.file}:${b.line}`)).toEqual([]);
    console.log(
      `docs blocks: ${blocks.length}, not run: ${blocks.filter((b) => b.skip).length}\n` +
        blocks.filter((b) => b.skip).map((b) => `  ${b.file}:${b.line} — ${b.skip}`).join('\n'),
    );
  });

  for (const b of blocks.filter((x) => !x.skip)) {
    it(`${b.file}:${b.line} (${b.heading})`, { timeout: 90_000 }, () => {
      const script = join(scratch, 'block.sh');
      writeFileSync(
        script,
        [
          'sudo() { "$@"; }',
          `tsrun() { "${join(ROOT, 'bin', 'tsrun')}" "$@"; }`,
          b.code,
          // background containers of the block end before the next block starts
          'wait',
          '',
        ].join('\n'),
      );
      const r = spawnSync('bash', [script], { cwd: scratch, env: { ...tsrunEnvVars(), TSRUN_ID_PREFIX: prefix }, encoding: 'utf8', timeout: 80_000 });
      const out = `${r.stdout}\n${r.stderr}`;
      expect(r.signal, `${b.file}:${b.line} did not finish:\n${out}`).toBeNull();
      for (const re of BROKEN) expect(out, `${b.file}:${b.line}`).not.toMatch(re);
    });
  }
});
