import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PROJECT_ROOT } from '../src/kernel/native.js';
import { benchLayer, push, startRegistry, writeLayout } from '../test/registry/harness.js';
import { median, ratio, timeAndPeak } from './util.js';

// Issue 7's benchmark: pull + unpack of a ~100 MB, 5-layer image from a local registry
// (Debian's docker-registry on 127.0.0.1): `tsrun pull` (download, verify, unpack each layer
// once) against `skopeo copy` to an OCI layout followed by `umoci unpack` of it, the usual
// pair of tools for the same job without a daemon. Each run starts from empty directories.

export async function benchPull(n: number): Promise<string> {
  for (const tool of ['docker-registry', 'skopeo', 'umoci']) execFileSync('sh', ['-c', `command -v ${tool}`], { stdio: 'ignore' });
  const base = mkdtempSync(join(tmpdir(), 'tsrun-bench-pull-'));
  const reg = await startRegistry();
  try {
    const t0 = Date.now();
    const layers = Array.from({ length: 5 }, (_, i) => benchLayer(join(base, 'src'), i, 20));
    if (process.env.BENCH_VERBOSE) process.stderr.write(`built in ${Date.now() - t0} ms\n`);
    const total = layers.reduce((s, l) => s + l.blob.length, 0);
    writeLayout(join(base, 'layout'), 'v1', [{ layers, config: { Cmd: ['sh'] } }]);
    const ref = `${reg.host}/bench/img:v1`;
    push(join(base, 'layout'), 'v1', ref);
    if (process.env.BENCH_VERBOSE) process.stderr.write(`pushed at ${Date.now() - t0} ms\n`);
    const bin = join(PROJECT_ROOT, 'bin', 'tsrun');
    const tsrunMs: number[] = [];
    const peerMs: number[] = [];
    const tsrunMB: number[] = [];
    const skopeoMB: number[] = [];
    const umociMB: number[] = [];
    for (let i = 0; i < n; i++) {
      const data = join(base, `data${i}`);
      const a = timeAndPeak(bin, ['pull', '-q', '--insecure-registry', reg.host, ref], { ...process.env, TSRUN_DATA: data });
      tsrunMs.push(a.ms);
      tsrunMB.push(a.peakMB);
      rmSync(data, { recursive: true, force: true });
      const oci = join(base, `oci${i}`);
      const bundle = join(base, `bundle${i}`);
      const s = timeAndPeak('skopeo', ['copy', '--quiet', '--src-tls-verify=false', `docker://${ref}`, `oci:${oci}:v1`]);
      const u = timeAndPeak('umoci', ['unpack', '--image', `${oci}:v1`, bundle]);
      peerMs.push(s.ms + u.ms);
      skopeoMB.push(s.peakMB);
      umociMB.push(u.peakMB);
      rmSync(oci, { recursive: true, force: true });
      rmSync(bundle, { recursive: true, force: true });
    }
    const t = median(tsrunMs);
    const p = median(peerMs);
    const skopeo = execFileSync('skopeo', ['--version'], { encoding: 'utf8' }).trim();
    const umoci = execFileSync('umoci', ['--version'], { encoding: 'utf8' }).trim();
    return [
      '## Pull and unpack (issue 7)',
      '',
      `A 5-layer image of ${(total / 1e6).toFixed(0)} MB compressed (~100 MB unpacked: half random bytes, half ${'~11,000'} small text files), pushed to Debian's docker-registry on 127.0.0.1; every run into empty directories. Median of ${n} runs.`,
      '',
      '| | median time | | median peak RSS |',
      '| --- | --- | --- | --- |',
      `| \`tsrun pull\` (download, verify, unpack each layer once) | ${(t / 1000).toFixed(2)} s | ${ratio(t, p)} of the peers | ${median(tsrunMB).toFixed(0)} MB |`,
      `| \`skopeo copy\` + \`umoci unpack\` (${skopeo}; ${umoci}) | ${(p / 1000).toFixed(2)} s | | skopeo ${median(skopeoMB).toFixed(0)} MB, umoci ${median(umociMB).toFixed(0)} MB |`,
      '',
      `All runs (ms): tsrun ${tsrunMs.map((x) => x.toFixed(0)).join(', ')}; skopeo+umoci ${peerMs.map((x) => x.toFixed(0)).join(', ')}. Peak RSS (MB, /usr/bin/time's maxrss of the largest process): tsrun ${tsrunMB.map((x) => x.toFixed(0)).join(', ')}; skopeo ${skopeoMB.map((x) => x.toFixed(0)).join(', ')}; umoci ${umociMB.map((x) => x.toFixed(0)).join(', ')}.`,
      '',
    ].join('\n');
  } finally {
    await reg.stop();
    rmSync(base, { recursive: true, force: true });
  }
}

// `node dist/bench/pull.js` runs this benchmark alone
if (process.argv[1]?.endsWith('pull.js')) {
  benchPull(Number(process.env.BENCH_N ?? 3)).then(
    (s) => process.stdout.write(s),
    (e) => {
      process.stderr.write(`bench: ${e?.stack ?? e}\n`);
      process.exit(1);
    },
  );
}
