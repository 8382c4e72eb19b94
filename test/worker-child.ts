// Run by test/worker.test.ts in a child process: vitrim used on the main thread and in a worker
// thread (each env loads the addon and keeps its own NativeTensor class and error factory), then on
// the main thread again after the worker ended. Prints one JSON line per thread.
import { isMainThread, parentPort, Worker } from 'node:worker_threads';
import { ops, ShapeError, tensor } from '../lib/index.js';

function use(values: number[]): { sum: number[]; typed: boolean } {
  const a = tensor(Float32Array.from(values), [values.length]);
  const sum = Array.from(ops.add(a, a).dataSync());
  let typed = false;
  try {
    ops.reshape(a, [values.length + 1]);
  } catch (e) {
    typed = e instanceof ShapeError;
  }
  return { sum, typed };
}

if (isMainThread) {
  const before = use([1, 2, 3]);
  // the worker loads this file through tsx's loader, registered in it (execArgv's --import is not
  // applied to worker threads)
  const worker = new Worker(`import('tsx/esm/api').then(({ register }) => { register(); return import(${JSON.stringify(import.meta.url)}); })`, { eval: true });
  const inWorker = await new Promise((resolve, reject) => {
    worker.once('message', resolve);
    worker.once('error', reject);
  });
  await new Promise((resolve) => worker.once('exit', resolve));
  console.log(JSON.stringify({ before, inWorker, after: use([4, 5]) }));
} else {
  parentPort!.postMessage(use([7, 8, 9, 10]));
}
