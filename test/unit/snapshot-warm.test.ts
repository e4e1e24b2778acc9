// What the CLI's start-up snapshot runs at build time (src/cli/snapshot.ts, src/cli/warm.ts).
import { existsSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { buildProgram, main, prebuildProgram } from '../../src/cli/main.js';
import { RUN_FLAGS } from '../../src/cli/flags.js';
import { warmParsing, warmPlanning } from '../../src/cli/warm.js';
import { applyDefaults } from '../../src/config/spec-defaults.js';
import { compiledCount, compileSpec, warmBuiltinProfile } from '../../src/controls/seccomp/index.js';
import { specFromFlags } from '../../src/spec/from-flags.js';

function defaultRunSpec() {
  return specFromFlags({
    id: 'a'.repeat(64),
    image: { name: 'img', config: { Cmd: ['sh'] } },
    args: ['true'],
    opts: {},
    rootfs: '/c/merged',
    containerDir: '/c',
    env: { readImageFile: () => undefined, ncpu: 2 },
    hostEnv: {},
    flags: RUN_FLAGS,
    beforeFlags: (s) => applyDefaults(s, {}),
  });
}

describe('start-up snapshot warm-up', () => {
  it('compiles exactly the filter a default `run` asks for', () => {
    warmBuiltinProfile();
    const n = compiledCount();
    // a cache hit prints no warning again: the built-in profile must have none to print
    expect(compileSpec(defaultRunSpec())!.warnings).toEqual([]);
    expect(compiledCount()).toBe(n); // a cache hit: nothing new compiled
    // a different profile is not mistaken for it
    const other = defaultRunSpec();
    other.linux.seccomp!.syscalls = other.linux.seccomp!.syscalls!.slice(0, -1);
    compileSpec(other);
    expect(compiledCount()).toBe(n + 1);
  });

  it('plans and parses with made-up inputs only, creating nothing', async () => {
    warmPlanning();
    await warmParsing(buildProgram);
    expect(existsSync('/nonexistent')).toBe(false);
  });

  it('a prebuilt command tree serves one main() call, then main builds its own', async () => {
    prebuildProgram();
    expect(await main(['--version'])).toBe(0);
    expect(await main(['no-such-verb'])).toBe(125);
  });
});
