// The examples run as a user runs them (tsx, a child process) and report what they promise.
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { RUN_SEED, runExample } from './helpers.js';

const root = join(__dirname, '..');

describe('examples/gpu-inference.ts', () => {
  it('runs on the cpu when asked and times the eager forward', () => {
    const r = runExample('gpu-inference.ts', '--model', 'deit_tiny_patch16_224', '--img-size', '32', '--batch', '2', '--iters', '1', '--device', 'cpu', '--seed', String(RUN_SEED));
    expect(r.code, r.err).toBe(0);
    expect(r.out).toMatch(/^running on the cpu/);
    expect(r.out).toMatch(/deit_tiny_patch16_224: batch 2, 1000 classes/);
    expect(r.out).toMatch(/cpu float32 eager +[\d.]+ ms +[\d.]+ img\/s/);
  });

  it('bad arguments: a message and a non-zero exit, no stack trace', () => {
    for (const args of [['--batch', '0'], ['--model', 'no_such_model', '--device', 'cpu'], ['--device', 'tpu'],
      ['--checkpoint', join(root, 'package.json'), '--img-size', '32', '--device', 'cpu']]) {
      const r = runExample('gpu-inference.ts', ...args);
      expect(r.code, args.join(' ')).not.toBe(0);
      expect(r.err, args.join(' ')).toMatch(/error|Error/);
      expect(r.err, args.join(' ')).not.toMatch(/\n\s+at /);
    }
  });
});
