import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { planRun } from '../src/cli/run.js';
import { LocalStore } from '../src/image/local-store.js';
import { PROJECT_ROOT } from '../src/kernel/native.js';
import { deleteContainer, launch } from '../src/runtime/lifecycle.js';
import { loadState } from '../src/runtime/state.js';
import { median } from './util.js';

// Issue 6's benchmark: the memory a detached container costs beyond its own processes,
// i.e. its tsrun-monitor and the monitor's keeper (issue 12.6). RSS counts the static binary's shared text in every monitor;
// PSS (proportional set size, /proc/<pid>/smaps_rollup) divides shared pages among them,
// which is what 100 monitors really cost the host.
function memKiB(pid: number): { rss: number; pss: number } {
  const t = readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
  const get = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(t)?.[1] ?? NaN);
  return { rss: get('Rss'), pss: get('Pss') };
}

export async function benchMonitor(count: number): Promise<string> {
  const base = mkdtempSync(join(tmpdir(), 'tsrun-bench-mon-'));
  const paths = { root: join(base, 'run'), data: join(base, 'data') };
  await new LocalStore(join(paths.data, 'images')).ensureBuiltin();
  const ids: string[] = [];
  try {
    for (let i = 0; i < count; i++) {
      const plan = await planRun('busybox', ['sleep', '600'], {}, paths);
      await launch({ plan, paths, bundle: '', image: 'busybox', interactive: false, detached: { rmOnExit: false, tsrunArgv: [join(PROJECT_ROOT, 'bin', 'tsrun')] } });
      ids.push(plan.id);
    }
    await new Promise((r) => setTimeout(r, 500)); // let every monitor settle into its poll loop
    // per container: the monitor and its keeper (the keeper shares the monitor's pages, forked from it)
    const mons = ids.map((id) => {
      const s = loadState(paths, id)!;
      const [m, k] = [memKiB(s.monitorPid!), s.keeperPid ? memKiB(s.keeperPid) : { rss: 0, pss: 0 }];
      return { rss: m.rss + k.rss, pss: m.pss + k.pss };
    });
    const one = mons[0]!;
    const rss = mons.reduce((a, m) => a + m.rss, 0);
    const pss = mons.reduce((a, m) => a + m.pss, 0);
    const mib = (k: number) => `${(k / 1024).toFixed(2)} MiB`;
    return [
      `### Detached containers: memory of tsrun-monitor and its keeper (${count} idle containers)`,
      '',
      '| what | RSS | PSS |',
      '|---|---|---|',
      `| one monitor + keeper | ${mib(one.rss)} | ${mib(one.pss)} |`,
      `| median monitor + keeper | ${mib(median(mons.map((m) => m.rss)))} | ${mib(median(mons.map((m) => m.pss)))} |`,
      `| all ${count} monitors and keepers | ${mib(rss)} | ${mib(pss)} |`,
      `| per container (goal < 1 MiB) | ${mib(rss / count)} | ${mib(pss / count)} |`,
      '',
    ].join('\n');
  } finally {
    for (const id of ids) await deleteContainer(paths, id, true).catch(() => undefined);
    rmSync(base, { recursive: true, force: true });
  }
}
