#!/usr/bin/env node
// `tsrun pull` without the rest of the CLI: what bin/tsrun (native/launch.c) runs when pull
// is the first argument (src/cli/pull-main.ts says why).
import { pullMain } from '../dist/tsrun-pull.mjs';

pullMain(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (e) => {
    process.stderr.write(`tsrun: internal error: ${e?.stack ?? e}\n`);
    process.exit(125);
  },
);
