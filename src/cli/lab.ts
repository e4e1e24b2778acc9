// tsrun lab [list|all|N|NAME]: the workshop's eight labs on this kernel (docs/workshop.md).
import { writeSync } from 'node:fs';
import type { Command } from 'commander';
import { UsageError } from '../errors.js';
import type { Paths } from '../runtime/paths.js';
import { LabContext, type LabResult } from '../lab/context.js';
import { LABS, findLab } from '../lab/labs.js';
import { renderCommand, renderHeader, renderTap, renderVerdict } from '../lab/render.js';

const out = (s: string) => writeSync(1, s);

export function registerLabCommand(program: Command, paths: () => Paths, setExit: (n: number) => void): void {
  program
    .command('lab')
    .description("run the workshop's labs: each control off, then on, with the commands and what the kernel said")
    .argument('[lab]', 'list (default), all, a number 1-8 or a name (escape, audit, namespaces, cgroups, userns-remap, live-restore, mac, everything)')
    .option('--json', 'the results as JSON (an array, one object per lab)')
    .option('--tap', 'the results as TAP (unavailable labs are SKIPs)')
    .action(async (key: string | undefined, o: { json?: boolean; tap?: boolean }) => {
      if (!key || key === 'list') {
        if (o.json) out(JSON.stringify(LABS.map(({ n, name, title, workshop, cis }) => ({ n, name, title, workshop, cis })), null, 2) + '\n');
        else for (const l of LABS) out(`${String(l.n).padStart(2)}  ${l.name.padEnd(13)} ${l.title}\n`);
        return;
      }
      const labs = key === 'all' ? LABS : [findLab(key)].filter((l) => l !== undefined);
      if (labs.length === 0) throw new UsageError(`tsrun lab ${JSON.stringify(key)}: no such lab (tsrun lab list: 1-8, or escape, audit, namespaces, cgroups, userns-remap, live-restore, mac, everything)`);
      if (process.getuid?.() !== 0) throw new UsageError('tsrun lab needs root: each lab runs containers (try: sudo tsrun lab ...)');
      const quiet = o.json || o.tap;
      const p = paths();
      const env = { ...process.env, TSRUN_ROOT: p.root, TSRUN_DATA: p.data };
      const results: LabResult[] = [];
      for (const lab of labs) {
        if (!quiet) out(renderHeader(lab));
        const ctx = new LabContext(env, quiet ? undefined : (c) => out(renderCommand(c)));
        let r: LabResult;
        try {
          r = await lab.run(ctx);
        } finally {
          const problems = ctx.cleanup();
          for (const pr of problems) writeSync(2, `tsrun: lab ${lab.n}: cleanup: ${pr}\n`);
        }
        results.push(r);
        if (!quiet) out(renderVerdict(r));
      }
      if (o.json) out(JSON.stringify(results, null, 2) + '\n');
      else if (o.tap) out(renderTap(results));
      setExit(results.some((r) => r.verdict === 'fail' || r.verdict === 'inconclusive') ? 1 : 0);
    });
}
