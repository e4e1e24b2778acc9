#!/usr/bin/env node
// The CLI without the start-up snapshot: what bin/tsrun (native/launch.c) runs when the
// snapshot does not fit the node at hand, or with TSRUN_NO_SNAPSHOT=1.
import { main } from '../dist/tsrun.mjs';

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (e) => {
    process.stderr.write(`tsrun: internal error: ${e?.stack ?? e}\n`);
    process.exit(125);
  },
);
