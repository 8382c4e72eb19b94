// The examples run as a user runs them (tsx, a child process) and report what they promise.
import { mkdtempSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
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

describe('examples/adavit-shapes.ts', () => {
  it('trains dense then AdaViT, compares four ways, shows decisions and reloads the run identically', () => {
    const out = mkdtempSync(join(tmpdir(), 'vitrim-example-'));
    const r = runExample('adavit-shapes.ts', '--epochs', '1', '--ada-epochs', '1', '--limit', '3', '--batch-size', '16', '--test-size', '48',
      '--out', out, '--seed', String(RUN_SEED % 1000));
    expect(r.code, r.err).toBe(0);
    for (const row of ['dense', 'AdaViT \\(threshold 0.5\\)', 'AdaViT, keepRatio 0.25', 'random decisions(, same MACs| \\(MACs unmatched\\))']) {
      expect(r.out).toMatch(new RegExp(`${row} +accuracy +[\\d.]+ % +MACs +[\\d.]+ % of dense +\\d+ img/s`));
    }
    // keepRatio 0.25 keeps a quarter of the patches in every gated block
    expect(r.out).toMatch(/AdaViT, keepRatio 0.25 .* kept: patches 25 %/);
    expect(r.out).toMatch(/image 2: \w+, predicted \w+, \d+ % of dense MACs\n {2}block 1: \d+\/64 patches, \d\/3 heads, attn (on|off), mlp (on|off)/);
    expect(r.out).toMatch(/\n {2}block 1 {3}block 2 {3}block 3\n( {2}[#.]{8} {2}[#.]{8} {2}[#.]{8}\n){8}/);
    expect(r.out).toMatch(/same logits: yes; same decisions: yes/);
    for (const f of ['dense/model.safetensors', 'adavit/model.safetensors', 'adavit/policy.safetensors']) expect(existsSync(join(out, f)), f).toBe(true);
  });

  it('bad arguments: a message and a non-zero exit, no stack trace', () => {
    for (const args of [['--epochs', '0'], ['--target', '2'], ['--device', 'tpu'], ['--precision', 'fp8']]) {
      const r = runExample('adavit-shapes.ts', ...args);
      expect(r.code, args.join(' ')).not.toBe(0);
      expect(r.err, args.join(' ')).toMatch(/error|adavit-shapes:/);
      expect(r.err, args.join(' ')).not.toMatch(/\n\s+at /);
    }
  });
});
