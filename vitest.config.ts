import { defineConfig } from 'vitest/config';

// Kernel tests share the host (mounts, cgroups, pids): run files one at a time,
// tests inside a file in order. Unit tests are cheap either way.
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/global-setup.ts'],
    fileParallelism: false,
    testTimeout: 60_000,
    hookTimeout: 120_000,
    reporters: ['default'],
  },
});
