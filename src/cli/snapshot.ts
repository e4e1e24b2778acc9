// Entry of the CLI's V8 start-up snapshot (scripts/bundle.mjs builds it with
// `node --build-snapshot`; bin/tsrun starts node from it when it matches that node).
//
// Node compiles and evaluates the whole CLI (~500 KB of JavaScript) before tsrun can do
// anything; from a snapshot the heap is restored as it was at the end of this file instead.
// What runs here runs once, at build time, so it must not read the host: no cgroup layout,
// no capabilities, no environment (those are read when a command runs). It may fill caches
// whose key says what they depend on:
//  - the built-in seccomp profile, compiled for docker's default capabilities on this arch
//    (the cache is keyed by the profile's content: any other profile compiles as usual);
//  - the command tree, which commander builds from constants.
// It also walks the pure part of a `run` once (src/cli/warm.ts) so its bytecode is in the
// snapshot.
import { startupSnapshot } from 'node:v8';
import { writeSync } from 'node:fs';
import { buildProgram, main, prebuildProgram } from './main.js';
import { warmParsing, warmPlanning } from './warm.js';

warmPlanning();
// the builder runs the event loop empty before it takes the snapshot
void warmParsing(buildProgram).then(prebuildProgram);

startupSnapshot.setDeserializeMainFunction(() => {
  // argv: [node, ...tsrun's arguments] (the launcher puts them after `--`)
  main(process.argv.slice(1)).then(
    (code) => process.exit(code),
    (e) => {
      writeSync(2, `tsrun: internal error: ${(e as Error)?.stack ?? String(e)}\n`);
      process.exit(125);
    },
  );
});
