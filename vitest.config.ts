import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    // Native addons and worker threads don't mix well; forks isolate each test file in a process.
    pool: 'forks',
    include: ['test/**/*.test.ts'],
    testTimeout: 120_000,
    hookTimeout: 120_000,
  },
});
