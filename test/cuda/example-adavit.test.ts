// examples/adavit-shapes.ts on cuda in bfloat16 mixed precision: dense training, AdaViT fine-tuning
// with distillation, the four evaluations (matchedRandom included), packed inference with recorded
// decisions and the reload from disk, end to end on the GPU. Under the emulation it takes about 50 s.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { RUN_SEED, runExample } from '../helpers.js';
import { describeCuda } from './helpers.js';

describeCuda('examples/adavit-shapes.ts on cuda', () => {
  it('trains, compares and reloads in bfloat16 mixed precision (a quick run)', () => {
    const out = mkdtempSync(join(tmpdir(), 'vitrim-example-cuda-'));
    const r = runExample('adavit-shapes.ts', '--epochs', '1', '--ada-epochs', '1', '--limit', '2', '--batch-size', '8', '--test-size', '16',
      '--device', 'cuda', '--precision', 'bfloat16', '--out', out, '--seed', String(RUN_SEED % 1000));
    expect(r.code, r.err).toBe(0);
    expect(r.out).toMatch(/dense ViT \([\d,]+ parameters\) on cuda/);
    for (const row of ['dense', 'AdaViT \\(threshold 0.5\\)', 'AdaViT, keepRatio 0.25', 'random decisions(, same MACs| \\(MACs unmatched\\))']) {
      expect(r.out).toMatch(new RegExp(`${row} +accuracy +[\\d.]+ % +MACs +[\\d.]+ % of dense`));
    }
    expect(r.out).toMatch(/same logits: yes; same decisions: yes/);
  });
});
