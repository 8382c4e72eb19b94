// The data layer under random and hostile arguments (fast-check): the procedural dataset's options
// (augmentation and normalisation included), getBatch indices, batches() options, subset, IDX parsing
// of random bytes, and the image transforms. Each call succeeds or throws a typed VitrimError.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ArgumentError, data } from '../lib/index.js';
import { fuzzCalls } from './fuzz-helpers.js';

const RUNS = Number(process.env.VITRIM_FUZZ_RUNS ?? 150);
const EDGE: unknown[] = [0, 1, -1, 0.5, 2, 3, 16, 17, 32, Number.NaN, Infinity, -Infinity, 2 ** 31, 2 ** 53, 1.5, 1e30];
const JUNK: unknown[] = ['x', {}, null, undefined, [1], [], true, 1n, () => 1];
const any = fc.oneof(fc.constantFrom(...EDGE), fc.constantFrom(...JUNK), fc.integer({ min: -2, max: 40 }));
const maybe = <T>(a: fc.Arbitrary<T>) => fc.oneof({ weight: 4, arbitrary: a }, { weight: 1, arbitrary: any });
const obj = (fields: Record<string, fc.Arbitrary<unknown>>) => maybe(fc.record(fields, { requiredKeys: [] }));

const check = <A extends unknown[]>(arbs: { [K in keyof A]: fc.Arbitrary<A[K]> }, name: string, f: (...a: A) => unknown, k: number) =>
  fuzzCalls(arbs, name, f, k, RUNS);

const augment = obj({ cropPadding: maybe(fc.integer({ min: 0, max: 4 })), hflip: maybe(fc.boolean()) });
const normalize = fc.oneof(fc.constantFrom('half', 'imagenet', 'inception', 'none', 'bogus'), obj({ mean: maybe(fc.array(fc.double({ noNaN: true, min: -1, max: 1 }), { maxLength: 4 })), std: maybe(fc.array(fc.double({ noNaN: true, min: -1, max: 2 }), { maxLength: 4 })) }), any);
const shapesOpts = obj({
  split: maybe(fc.constantFrom('train', 'test')), size: maybe(fc.constantFrom(16, 24, 32)), seed: maybe(fc.nat(100)), length: maybe(fc.integer({ min: 1, max: 50 })),
  numClasses: maybe(fc.integer({ min: 2, max: 10 })), normalize, augment: fc.oneof(augment, fc.constant(false)), masks: maybe(fc.boolean()),
});

describe('fuzzing the data layer', () => {
  it('shapes(options), getBatch, batches, subset', () => {
    check([shapesOpts], 'data.shapes', (o) => data.shapes(o as never), 1);
    const ds = data.shapes({ split: 'test', length: 20, size: 16, augment: { cropPadding: 2, hflip: true } });
    check([maybe(fc.array(fc.integer({ min: -2, max: 22 }), { maxLength: 5 })), obj({ epoch: any })], 'getBatch', (ix, o) => ds.getBatch(ix as never, o as never), 2);
    const bopts = obj({ batchSize: maybe(fc.integer({ min: 0, max: 30 })), shuffle: maybe(fc.boolean()), seed: any, epoch: any, dropLast: maybe(fc.boolean()), limit: any });
    check([bopts], 'batches', (o) => {
      let n = 0;
      for (const b of data.batches(ds, o as never)) if (++n > 3 || !b) break;
    }, 3);
    check([fc.oneof(fc.integer({ min: -2, max: 30 }), fc.array(fc.integer({ min: -2, max: 25 }), { maxLength: 6 }), any)], 'subset', (n) => data.subset(ds, n as never).getBatch([0]), 4);
  });

  it('parseIdx on random and mutated bytes', () => {
    // a valid rank-3 IDX (unsigned bytes, 2 × 3 × 3) to mutate, and raw random bytes
    const valid = Uint8Array.from([0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 3, ...Array.from({ length: 18 }, (_, i) => i)]);
    const bytes = fc.oneof(
      fc.uint8Array({ maxLength: 40 }),
      fc.tuple(fc.array(fc.tuple(fc.nat(33), fc.nat(255)), { minLength: 1, maxLength: 4 }), fc.nat(40)).map(([flips, cut]) => {
        const b = valid.slice(0, Math.max(cut, 4));
        for (const [i, v] of flips) if (i < b.length) b[i] = v;
        return b;
      }),
    );
    check([bytes, fc.constantFrom(1, 3, 0, -1, 2.5)], 'parseIdx', (b, rank) => data.parseIdx(b as Uint8Array, 'fuzz.idx', rank as number), 5);
  });

  it('transforms', () => {
    const shape = maybe(fc.tuple(fc.integer({ min: 0, max: 3 }), fc.integer({ min: 0, max: 5 }), fc.integer({ min: 0, max: 5 })));
    const src = (s: unknown) => (Array.isArray(s) && s.length === 3 ? new Float32Array((s as number[]).reduce((a, b) => a * (b > 0 ? b : 0), 1)) : s);
    check([shape, any, any], 'resizeBilinear', (s, h, w) => data.resizeBilinear(src(s) as never, s as never, h as never, w as never), 6);
    check([shape, fc.oneof(any, obj({ top: any, bottom: any, left: any, right: any })), any], 'pad', (s, p, v) => data.pad(src(s) as never, s as never, p as never, v as never), 7);
    check([shape, any], 'repeatChannels', (s, c) => data.repeatChannels(src(s) as never, s as never, c as never), 8);
    check([shape], 'hflip', (s) => data.hflip(src(s) as never, s as never), 9);
    const stats = maybe(fc.array(fc.oneof(fc.double({ noNaN: true, min: -1, max: 2 }), fc.constantFrom(0, Number.NaN, Infinity)), { maxLength: 4 }));
    check([shape, stats, stats], 'normalize', (s, m, sd) => data.normalize(src(s) as never, s as never, m as never, sd as never), 10);
  });
});

// What the fuzzer found (a RangeError for a huge output, a TypeError from printing a BigInt shape,
// a string taken as image data), pinned down.
describe('transforms: huge outputs and wrong kinds are typed errors', () => {
  it('resizeBilinear, pad, repeatChannels, hflip', () => {
    const img = new Float32Array(4);
    expect(() => data.resizeBilinear(img, [1, 2, 2], 1, 1e30)).toThrow(ArgumentError);
    expect(() => data.resizeBilinear(img, [1, 2, 2], 1e5, 1e5)).toThrow(/output would hold 10000000000 elements/);
    expect(() => data.pad(img, [1, 2, 2], { top: 2 ** 30, bottom: 2 ** 30, left: 0, right: 0 })).toThrow(ArgumentError);
    expect(() => data.repeatChannels(img, [1, 2, 2], 2 ** 30)).toThrow(/output would hold/);
    expect(() => data.hflip(img, [1n, 2, 2] as never)).toThrow(/shape must be \[C, H, W\] of positive integers, got \[1n, 2, 2\]/);
    expect(() => data.hflip('abcd' as never, [1, 2, 2])).toThrow(/data must be an array or a typed array/);
    expect(Array.from(data.hflip(Float32Array.from([1, 2, 3, 4]), [1, 2, 2]))).toEqual([2, 1, 4, 3]);
  });
});
