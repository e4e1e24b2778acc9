import { spawnSync } from 'node:child_process';

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** Wall time of one synchronous command, in milliseconds; throws if it fails. */
export function timeCommand(cmd: string, args: string[], env?: NodeJS.ProcessEnv): number {
  const t0 = process.hrtime.bigint();
  const r = spawnSync(cmd, args, { env: env ?? process.env, stdio: ['ignore', 'ignore', 'pipe'] });
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.status}: ${r.stderr}`);
  return ms;
}

export const fmt = (ms: number) => `${ms.toFixed(1)} ms`;
export const ratio = (a: number, b: number) => `${(a / b).toFixed(2)}×`;

/**
 * Wall time and peak RSS (VmHWM, from wait4's ru_maxrss through GNU time) of one command;
 * throws if it fails. The peak is the largest process of the command, as getrusage reports.
 */
export function timeAndPeak(cmd: string, args: string[], env?: NodeJS.ProcessEnv): { ms: number; peakMB: number } {
  const t0 = process.hrtime.bigint();
  const r = spawnSync('/usr/bin/time', ['-f', 'tsrun-bench-maxrss %M', cmd, ...args], { env: env ?? process.env, stdio: ['ignore', 'ignore', 'pipe'], encoding: 'utf8' });
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.status}: ${r.stderr}`);
  const m = /tsrun-bench-maxrss (\d+)/.exec(r.stderr);
  if (!m) throw new Error(`/usr/bin/time gave no peak RSS for ${cmd}: ${r.stderr}`);
  return { ms, peakMB: Number(m[1]) / 1024 };
}
