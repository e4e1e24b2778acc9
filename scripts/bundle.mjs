// Bundles the CLI, three times:
//  - dist/tsrun.mjs, one ES module (bin/tsrun-node.mjs runs it). Node 20 loads an ES module
//    graph file by file with asynchronous reads; one file cuts tens of ms of start-up.
//  - dist/tsrun.blob, a V8 start-up snapshot of the same code (src/cli/snapshot.ts), built
//    with this very node, and dist/tsrun.blob.stamp saying which node and which directory
//    it fits. bin/tsrun (native/launch.c) starts node from the blob when the stamp fits:
//    no parsing, compiling or evaluating ~500 KB of JavaScript on each call.
//  - dist/tsrun-pull.mjs, the pull verb alone (src/cli/pull-main.ts), which bin/tsrun runs
//    for `tsrun pull`.
// The unbundled dist/src stays for the library API and the benchmarks.
import { build } from 'esbuild';
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, readFileSync, readdirSync, realpathSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import vm from 'node:vm';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = realpathSync(join(dirname(fileURLToPath(import.meta.url)), '..'));
const dist = join(root, 'dist');

/** One ES module of `entry` and all it imports, at dist/`out`. */
const esmBundle = (entry, out) =>
  build({
    entryPoints: [join(root, entry)],
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    outfile: join(dist, out),
    // commander is CommonJS: give the bundle a require() of its own
    banner: { js: "import { createRequire as __tsrunRequire } from 'node:module'; const require = __tsrunRequire(import.meta.url);" },
    logLevel: 'warning',
  });

await esmBundle('src/cli/main.ts', 'tsrun.mjs');
// `tsrun pull` alone (src/cli/pull-main.ts): bin/tsrun runs it for a pull, whose peak memory
// counts, so that it does not parse and evaluate the rest of the CLI.
await esmBundle('src/cli/pull-main.ts', 'tsrun-pull.mjs');

// The snapshot builder runs one CommonJS script. import.meta.url has no meaning there: it
// becomes the ES bundle's URL, which the project's files are found from (the stamp ties the
// blob to this directory).
const snapshotEntry = join(dist, 'tsrun-snapshot.cjs');
await build({
  entryPoints: [join(root, 'src/cli/snapshot.ts')],
  bundle: true,
  platform: 'node',
  format: 'cjs',
  target: 'node20',
  outfile: snapshotEntry,
  define: { 'import.meta.url': JSON.stringify(pathToFileURL(join(dist, 'tsrun.mjs')).href) },
  logLevel: 'warning',
});

// The OCI schema's validator (src/spec/schema/README.md) is required on the first bundle only,
// relative to the module that loads it: dist/tsrun.mjs (and the snapshot, which says it is
// that file) and the unbundled dist/src/spec/bundle.js.
// Next to each copy, a V8 code cache of it made after one validation, so its functions are
// in it compiled (src/spec/bundle.ts loadValidator: ~2 ms instead of ~7 on each bundle).
{
  const { VALIDATOR_WRAPPER } = await import(pathToFileURL(join(dist, 'src', 'spec', 'bundle.js')).href);
  const src = readFileSync(join(root, 'src', 'spec', 'schema', 'config-validator.cjs'), 'utf8');
  const sample = { ociVersion: '1.2.0', process: { args: ['sh'], cwd: '/', user: { uid: 0, gid: 0 }, env: ['PATH=/bin'] }, root: { path: 'rootfs' }, mounts: [{ destination: '/proc', type: 'proc', source: 'proc' }], linux: { namespaces: [{ type: 'pid' }, { type: 'mount' }] } };
  for (const to of [join(dist, 'schema'), join(dist, 'src', 'spec', 'schema')]) {
    mkdirSync(to, { recursive: true });
    const file = join(to, 'config-validator.cjs');
    copyFileSync(join(root, 'src', 'spec', 'schema', 'config-validator.cjs'), file);
    const script = new vm.Script(VALIDATOR_WRAPPER[0] + src + VALIDATOR_WRAPPER[1], { filename: file });
    const m = { exports: undefined };
    script.runInThisContext()(m, {});
    if (m.exports(sample) !== true) throw new Error('bundle: the schema validator rejects the sample config');
    m.exports({ ociVersion: 1 }); // the error paths too
    writeFileSync(`${file}.v8cache`, script.createCachedData());
  }
}

const blob = join(dist, 'tsrun.blob');
const stamp = `${blob}.stamp`;
rmSync(stamp, { force: true }); // no stamp, no snapshot: a failed build falls back safely
// the launcher's cached verdicts on the previous blob (native/launch.c)
for (const f of readdirSync(dist)) if (/^tsrun\.blob\.(un)?fit/.test(f)) rmSync(join(dist, f));
// built aside and renamed in: a bin/tsrun starting meanwhile never reads a half-written blob
const tmp = `${blob}.${process.pid}.tmp`;
const r = spawnSync(process.execPath, ['--snapshot-blob', tmp, '--build-snapshot', snapshotEntry], { encoding: 'utf8' });
// node warns that some built-in modules are not verified for snapshots; tsrun's tests run
// the CLI from the snapshot, so only a failure matters here
if (r.status !== 0) {
  rmSync(tmp, { force: true });
  process.stderr.write(r.stderr);
  process.stderr.write(`bundle: building the start-up snapshot failed (exit ${r.status}); bin/tsrun will use dist/tsrun.mjs\n`);
} else {
  const node = realpathSync(process.execPath);
  const st = statSync(node, { bigint: true });
  const mtime = `${st.mtimeMs / 1000n}.${String(st.mtimeNs % 1_000_000_000n).padStart(9, '0')}`;
  renameSync(tmp, blob);
  writeFileSync(`${stamp}.tmp`, ['tsrun-snapshot-stamp 1', node, String(st.size), mtime, root, ''].join('\n'));
  renameSync(`${stamp}.tmp`, stamp);
}
