import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { PROJECT_ROOT } from '../src/kernel/native.js';
import { benchStartup } from './startup.js';
import { benchPull } from './pull.js';
import { benchMonitor } from './monitor.js';
import { benchSeccomp } from './seccomp.js';
import { benchStdio } from './stdio.js';

// `npm run bench` (as root): every benchmark, printed and written to docs/performance.md.
async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('npm run bench needs root (it starts containers)');
  const n = Number(process.env.BENCH_N ?? 30);
  const runc = execFileSync('runc', ['--version'], { encoding: 'utf8' }).split('\n')[0];
  const header = [
    '# Performance',
    '',
    `Measured by \`npm run bench\` on ${new Date().toISOString().slice(0, 10)}: ${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, kernel ${execFileSync('uname', ['-r'], { encoding: 'utf8' }).trim()}, Node ${process.version}, ${runc}.`,
    'Medians; on this shared machine whole rows move together by up to half between runs (compare the ratios).',
    'Where the start-up time goes, and what the targets ask: [startup.md](startup.md).',
    '',
  ].join('\n');
  // BENCH_ONLY=stdio: that section alone, printed, docs/performance.md left as it is
  if (process.env.BENCH_ONLY === 'stdio') {
    process.stdout.write(await benchStdio(n, Number(process.env.BENCH_STDIO_N ?? 5)));
    return;
  }
  // BENCH_ONLY=pull: the pull section alone (tsrun against skopeo + umoci), printed only
  if (process.env.BENCH_ONLY === 'pull') {
    process.stdout.write(await benchPull(Number(process.env.BENCH_PULL_N ?? 3)));
    return;
  }
  const sections = [
    await benchStartup(n),
    await benchStdio(n, Number(process.env.BENCH_STDIO_N ?? 5)),
    await benchMonitor(Number(process.env.BENCH_MONITORS ?? 100)),
    await benchSeccomp(n),
    await benchPull(Number(process.env.BENCH_PULL_N ?? 3)),
  ];
  const text = header + '\n' + sections.join('\n');
  process.stdout.write(text);
  writeFileSync(join(PROJECT_ROOT, 'docs', 'performance.md'), text);
}

main().catch((e) => {
  process.stderr.write(`bench: ${e?.stack ?? e}\n`);
  process.exit(1);
});
