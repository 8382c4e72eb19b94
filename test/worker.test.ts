// vitrim in worker threads: an addon's JS classes and functions belong to the env (thread) that
// made them, so each env keeps its own (EnvData, native/napi/common.h). A process-wide copy gave the
// main thread the last loaded worker's NativeTensor class: every op there failed ("Invalid
// argument") once a worker had loaded vitrim and ended. Run in a child process (test/worker-child.ts).
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { expect, it } from 'vitest';

it('vitrim works in a worker thread, and on the main thread before and after it', () => {
  const child = spawnSync(process.execPath, ['--import', 'tsx', fileURLToPath(new URL('./worker-child.ts', import.meta.url))], {
    encoding: 'utf8',
    timeout: 60_000,
  });
  expect(child.status, child.stderr).toBe(0);
  const out = JSON.parse(child.stdout.trim().split('\n').pop()!);
  expect(out).toEqual({
    before: { sum: [2, 4, 6], typed: true },
    inWorker: { sum: [14, 16, 18, 20], typed: true },
    after: { sum: [8, 10], typed: true },
  });
});
