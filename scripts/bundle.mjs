// Bundles the CLI into one ES module (dist/tsrun.mjs). Node 20 loads an ES module graph
// file by file with asynchronous reads; one file cuts tsrun's start-up by tens of ms
// (docs/performance.md). The unbundled dist/src stays for the library API and benchmarks.
import { build } from 'esbuild';

await build({
  entryPoints: ['src/cli/main.ts'],
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  outfile: 'dist/tsrun.mjs',
  // commander is CommonJS: give the bundle a require() of its own
  banner: { js: "import { createRequire as __tsrunRequire } from 'node:module'; const require = __tsrunRequire(import.meta.url);" },
  logLevel: 'warning',
});
