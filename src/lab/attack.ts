// The attack of workshop lab 1 (CVE-2019-5736), shared by labs 1 and 8. The target is
// always a DECOY: a copy of a program in the lab's temporary directory, run in the
// container's PID namespace by a deliberately vulnerable toy launcher
// (examples/vulnerable-launcher.c), never a binary the host uses.
import { chmodSync, copyFileSync, existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { EXAMPLES, INIT_BIN, TSRUN_BIN, type Fact, type Half, type LabContext, jsonLines, quiet, sha256File, sleep } from './context.js';

export const ATTACK = join(EXAMPLES, 'cve-2019-5736');
export const LAUNCHER = join(EXAMPLES, 'vulnerable-launcher');

export function attackBuilt(): string | undefined {
  for (const f of [ATTACK, LAUNCHER]) if (!existsSync(f)) return `${f} is missing: run \`npm install\` (or make -C native) to build the examples`;
  return undefined;
}

async function logsUntil(ctx: LabContext, half: Half, name: string, done: (events: Record<string, any>[]) => boolean, ms: number): Promise<Record<string, any>[]> {
  const end = Date.now() + ms;
  for (;;) {
    // polled quietly; the last `tsrun logs` is recorded below
    const r = ctx.sh(quiet(), [TSRUN_BIN, 'logs', name]);
    const ev = jsonLines(r.stdout);
    if (done(ev) || Date.now() > end) {
      ctx.tsrun(half, ['logs', name]);
      return ev;
    }
    await sleep(150);
  }
}

/**
 * The attacker in a container watching for NAME; the toy launcher runs the decoy in that
 * container. Returns the facts: the decoy's hash before and after, and what the attack saw.
 */
export async function attackDecoy(ctx: LabContext, half: Half, base: string, env: Record<string, string> = {}): Promise<Record<string, Fact>> {
  const decoy = join(ctx.tmp, `${base}-decoy`, 'decoy');
  ctx.sh(half, ['mkdir', '-p', join(ctx.tmp, `${base}-decoy`)]);
  copyFileSync('/bin/sleep', decoy);
  chmodSync(decoy, 0o755);
  ctx.note(half, `cp /bin/sleep ${decoy}        # the decoy: a private copy, never the host's binary`);
  const before = sha256File(decoy);
  ctx.note(half, `sha256sum ${decoy}`, `${before}  ${decoy}\n`);
  const name = ctx.name(base);
  const run = ctx.tsrun(half, ['run', '-d', '--name', name, '--cap-add', 'SYS_PTRACE', '-v', `${ATTACK}:/attack:ro`, 'busybox', '/attack', '8', 'decoy'], { env });
  if (run.code !== 0) return { decoy_changed: false, attack_started: false, error: run.stderr.trim() };
  await logsUntil(ctx, half, name, (ev) => ev.some((e) => e.event === 'watching'), 5000);
  const pid = ctx.initPid(half, name);
  if (!pid) return { decoy_changed: false, attack_started: true, error: 'no init pid' };
  ctx.sh(half, [LAUNCHER, String(pid), decoy, '1'], { display: `${LAUNCHER} ${pid} ${decoy} 1    # the vulnerable start-up (not tsrun)` });
  const ev = await logsUntil(ctx, half, name, (e) => e.some((x) => x.event === 'overwritten' || x.event === 'refused' || (x.event === 'caught' && x.open_path !== '0')), 4000);
  const after = sha256File(decoy);
  ctx.note(half, `sha256sum ${decoy}`, `${after}  ${decoy}\n`);
  const caught = ev.find((e) => e.event === 'caught');
  const last = ev.find((e) => e.event === 'overwritten' || e.event === 'refused');
  let firstLine = '';
  try {
    firstLine = readFileSync(decoy, 'utf8').split('\n')[1] ?? '';
  } catch {
    /* unreadable: reported by the hash */
  }
  ctx.tsrun(half, ['rm', '-f', name]);
  return {
    decoy_sha256_before: before,
    decoy_sha256_after: after,
    decoy_changed: before !== after,
    attack_caught_decoy: Boolean(caught),
    attack_open_exe: caught ? String(caught.open_path) : null,
    attack_reopen_write: last ? String(last.reopen_write) : null,
    attack_write: last ? String(last.write) : null,
    ...(before !== after ? { decoy_now_says: firstLine.slice(0, 80) } : {}),
  };
}

/** The attacker watching for tsrun-init while `tsrun exec` runs again and again. */
export async function attackInit(ctx: LabContext, half: Half, base: string): Promise<Record<string, Fact>> {
  const before = sha256File(INIT_BIN);
  ctx.note(half, `sha256sum ${INIT_BIN}`, `${before}  ${INIT_BIN}\n`);
  const name = ctx.name(base);
  const run = ctx.tsrun(half, ['run', '-d', '--name', name, '--cap-add', 'SYS_PTRACE', '-v', `${ATTACK}:/attack:ro`, 'busybox', '/attack', '15', 'tsrun-init']);
  if (run.code !== 0) return { init_changed: false, attack_started: false, error: run.stderr.trim() };
  await logsUntil(ctx, half, name, (ev) => ev.some((e) => e.event === 'watching'), 5000);
  let ev: Record<string, any>[] = [];
  let execs = 0;
  const q = quiet();
  const finished = (e: Record<string, any>[]) => e.some((x) => x.event === 'overwritten' || x.event === 'refused' || (x.event === 'caught' && x.open_path !== '0'));
  for (; execs < 40 && !finished(ev); execs++) {
    // the first call is shown; the repeats only give the attacker more chances
    ctx.tsrun(execs === 0 ? half : q, ['exec', name, 'true']);
    await sleep(30);
    ev = jsonLines(ctx.sh(q, [TSRUN_BIN, 'logs', name]).stdout);
  }
  if (execs > 1) ctx.note(half, `# ... tsrun exec ${name} true, ${execs} times in all, until the attacker caught tsrun-init`);
  ev = await logsUntil(ctx, half, name, finished, 3000);
  const caught = ev.find((e) => e.event === 'caught');
  const last = ev.find((e) => e.event === 'overwritten' || e.event === 'refused');
  ctx.tsrun(half, ['rm', '-f', name]);
  const after = sha256File(INIT_BIN);
  ctx.note(half, `sha256sum ${INIT_BIN}`, `${after}  ${INIT_BIN}\n`);
  return {
    init_sha256_before: before,
    init_sha256_after: after,
    init_changed: before !== after,
    attack_caught_init: Boolean(caught),
    attack_exe_seen: caught ? String(caught.exe) : null,
    attack_open_exe: caught ? String(caught.open_path) : null,
    attack_reopen_write: last ? String(last.reopen_write) : null,
    attack_write: last ? String(last.write) : null,
    overwritten: ev.some((e) => e.event === 'overwritten'),
    execs,
  };
}
