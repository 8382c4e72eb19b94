// Device-side checks of indices and labels: immediate (the op throws) or deferred (the next
// synchronising call throws, before any result can be read), and inside a CUDA graph.
import { afterEach, expect, it } from 'vitest';
import { native } from '../../lib/native.js';
import { RUN_SEED, expectCode, nt, randn } from '../helpers.js';
import { describeCuda, expectRel } from './helpers.js';

const cu = (shape: number[], seed: number) => native.toDevice(nt(randn(shape, RUN_SEED + seed), shape), 'cuda');
const idx = (vals: number[], shape: number[]) => native.toDevice(native.fromArray(Int32Array.from(vals), shape, 'int32'), 'cuda');

describeCuda('cuda device-side checks', () => {
  afterEach(() => native.setDeviceChecks('immediate'));

  it('immediate (default): the op itself throws ERR_VITRIM_INDEX', () => {
    const x = cu([2, 5, 8], 1);
    expectCode(() => native.gatherTokens(x, idx([0, 1, 2, 9], [2, 2])), 'ERR_VITRIM_INDEX');
    const ok = native.gatherTokens(x, idx([4, 0, 3, 3], [2, 2]));
    expect(ok.shape).toEqual([2, 2, 8]);
  });

  it('deferred: the op returns, the next read throws naming the op, and later work is unaffected', () => {
    native.setDeviceChecks('deferred');
    const x = cu([2, 5, 8], 2);
    const bad = native.gatherTokens(x, idx([0, 1, 7, 2], [2, 2])); // no sync, no throw here
    const msg = expectCode(() => bad.read(), 'ERR_VITRIM_INDEX');
    expect(msg).toContain('gather_tokens');
    expect(msg).toContain('idx[1, 0] = 7');
    // The error was consumed: the same device and mode work on.
    const good = native.gatherTokens(x, idx([1, 1, 0, 4], [2, 2]));
    const want = native.gatherTokens(native.toDevice(x, 'cpu'), native.fromArray(Int32Array.from([1, 1, 0, 4]), [2, 2], 'int32'));
    expectRel(good, want, 0, 'gather after a deferred error');
    // Labels: cross-entropy with a label out of range, reported at synchronize().
    const logits = cu([3, 4], 3);
    native.crossEntropyForward(logits, idx([0, 4, 1], [3]), 0);
    expectCode(() => native.synchronize('cuda'), 'ERR_VITRIM_INDEX');
    native.synchronize('cuda');
  });

  it('deferred: synchronizeAsync and Tensor.data() reject with the typed error, then resolve', async () => {
    native.setDeviceChecks('deferred');
    const x = cu([2, 5, 8], 5);
    native.gatherTokens(x, idx([0, 9, 1, 2], [2, 2]));
    const e = await native.synchronizeAsync('cuda').then(() => null, (err: Error & { code?: string }) => err);
    expect(e?.code).toBe('ERR_VITRIM_INDEX');
    expect(e?.message).toContain('gather_tokens');
    await expect(native.synchronizeAsync('cuda')).resolves.toBeUndefined();
    // The library's Tensor.data() on cuda waits through synchronizeAsync: the same error, typed.
    const { IndexError, Tensor } = await import('../../lib/index.js');
    const bad = new Tensor(native.gatherTokens(x, idx([0, 1, 5, 2], [2, 2])));
    await expect(bad.data()).rejects.toBeInstanceOf(IndexError);
    const good = new Tensor(native.gatherTokens(x, idx([4, 0, 3, 1], [2, 2])));
    const want = native.gatherTokens(native.toDevice(x, 'cpu'), native.fromArray(Int32Array.from([4, 0, 3, 1]), [2, 2], 'int32'));
    expect(Array.from((await good.data()) as Float32Array)).toEqual(Array.from(want.read() as Float32Array));
  });

  it('synchronizeAsync during a graph capture throws ERR_VITRIM_ARGUMENT; the capture can still be abandoned', () => {
    const x = cu([4, 8], 6);
    native.graphBegin();
    try {
      native.affine(x, 2, 1);
      expectCode(() => native.synchronizeAsync('cuda'), 'ERR_VITRIM_ARGUMENT');
    } finally {
      native.graphAbort();
    }
    expect(native.affine(x, 1, 0).read().length).toBe(32);
  });

  // Index tensors whose bounds are known (host uploads and writes, full, topk) skip the device-side
  // check and its sync when the bounds prove them in range; everything else is still checked.
  it('known index bounds: a write() of bad values, a cast, and bounds outside the range are still checked', () => {
    const x = cu([2, 5, 8], 7);
    const xc = native.toDevice(x, 'cpu');
    const ids = idx([4, 0, 3, 1], [2, 2]); // uploaded: bounds [0, 4] known, inside [0, 5)
    const want = native.gatherTokens(xc, native.toDevice(ids, 'cpu'));
    expectRel(native.gatherTokens(x, ids), want, 0, 'gather with known bounds');
    ids.write(Int32Array.from([4, 0, 5, 1])); // the write records the new bounds [0, 5]
    expectCode(() => native.gatherTokens(x, ids), 'ERR_VITRIM_INDEX');
    ids.write(Int32Array.from([2, 2, 0, 4]));
    expect(native.gatherTokens(x, ids).shape).toEqual([2, 2, 8]);
    // A cast to int32 has no known bounds: checked.
    const viaCast = native.cast(native.toDevice(native.fromArray(Float32Array.from([0, 7, 1, 2]), [2, 2], 'float32'), 'cuda'), 'int32');
    expectCode(() => native.gatherTokens(x, viaCast), 'ERR_VITRIM_INDEX');
    // full(int32, v): bounds [v, v].
    expectCode(() => native.gatherTokens(x, native.full([2, 3], 5, 'int32', 'cuda')), 'ERR_VITRIM_INDEX');
    expect(native.gatherTokens(x, native.full([2, 3], 4, 'int32', 'cuda')).shape).toEqual([2, 3, 8]);
    // copies keep the bounds of their source, and still refuse what they prove out of range
    expectCode(() => native.gatherTokens(x, native.copy(idx([0, 6, 1, 1], [2, 2]))), 'ERR_VITRIM_INDEX');
    // topk's indices lie in [0, L): gathering with them is exact
    const scores = cu([2, 5], 8);
    const [, top] = native.topk(scores, 3, true);
    expectRel(native.gatherTokens(x, top), native.gatherTokens(xc, native.toDevice(top, 'cpu')), 0, 'gather by topk');
    // scatter, gatherRows and cross-entropy labels use the same bounds
    expectCode(() => native.scatterTokens(native.gatherTokens(x, top), top, 2), 'ERR_VITRIM_INDEX');
    const rows = idx([9, 1], [2]);
    expectCode(() => native.gatherRows(native.toDevice(native.fromArray(randn([4, 3], RUN_SEED + 9), [4, 3], 'float32'), 'cuda'), rows), 'ERR_VITRIM_INDEX');
    expectCode(() => native.crossEntropyForward(cu([3, 4], 10), idx([0, 3, 4], [3]), 0), 'ERR_VITRIM_INDEX');
    const [loss] = native.crossEntropyForward(cu([3, 4], 10), idx([0, 3, 2], [3]), 0);
    const [lossCpu] = native.crossEntropyForward(native.toDevice(cu([3, 4], 10), 'cpu'), native.fromArray(Int32Array.from([0, 3, 2]), [3], 'int32'), 0);
    expectRel(loss, lossCpu, 1e-6, 'cross-entropy with known label bounds');
  });

  // The cross-entropy backward trusts an lse only while it is the forward's, for these logits as they
  // are: a write to either, or an lse from other logits, is checked (and caught) again.
  it('cross-entropy backward: the lse check is skipped only while lse and logits are unchanged', () => {
    const x = cu([4, 5], 11);
    const y = idx([0, 4, 2, 1], [4]);
    const [, lse] = native.crossEntropyForward(x, y, 0.1);
    const want = native.crossEntropyBackward(native.toDevice(x, 'cpu'), native.toDevice(y, 'cpu'), 0.1, native.toDevice(lse, 'cpu'), 1);
    expectRel(native.crossEntropyBackward(x, y, 0.1, lse, 1), want, 1e-5, 'trusted lse');
    const shifted = Float32Array.from(lse.read() as Float32Array, (v, i) => (i === 2 ? v + 1 : v));
    lse.write(shifted);
    expect(expectCode(() => native.crossEntropyBackward(x, y, 0.1, lse, 1), 'ERR_VITRIM_ARGUMENT')).toContain('lse[2]');
    const [, lse2] = native.crossEntropyForward(x, y, 0.1);
    x.write(randn([4, 5], RUN_SEED + 12, 3)); // new logits: the old lse no longer belongs to them
    expectCode(() => native.crossEntropyBackward(x, y, 0.1, lse2, 1), 'ERR_VITRIM_ARGUMENT');
    const [, lse3] = native.crossEntropyForward(x, y, 0.1);
    expectCode(() => native.crossEntropyBackward(cu([4, 5], 13), y, 0.1, lse3, 1), 'ERR_VITRIM_ARGUMENT');
    // labels with unknown bounds (a cast) are checked even with the forward's lse
    expectCode(() => native.crossEntropyBackward(x, native.cast(native.full([4], 7, 'float32', 'cuda'), 'int32'), 0.1, lse3, 1), 'ERR_VITRIM_INDEX');
  });

  // Attention keep masks known to lie in [0, 1] (hard Gumbel decisions, step, full, and concat / cast /
  // copy of those) skip the range check; a write, or a mask made by other ops, is checked again.
  it('attention keep: known [0, 1] masks are not checked, everything else is', () => {
    const [B, N, H, D] = [2, 5, 2, 4];
    const qkv = cu([B, N, 3 * H * D], 14);
    const qkvc = native.toDevice(qkv, 'cpu');
    const run = (keep: ReturnType<typeof cu>) => native.attentionForward(qkv, H, 0.5, keep, null, 0)[0];
    const ref = (keep: ReturnType<typeof cu>) => native.attentionForward(qkvc, H, 0.5, native.toDevice(keep, 'cpu'), null, 0)[0];
    const hard = native.gumbelSigmoid(cu([B, N - 1], 15), 1, 0.5, true, null, 7, 0)[0];
    const masks = {
      step: native.step(cu([B, N], 16), 0),
      full: native.full([B, N], 0.5, 'float32', 'cuda'),
      concat: native.concat([native.full([B, 1], 1, 'float32', 'cuda'), hard], 1),
    };
    for (const [name, k] of Object.entries(masks)) expectRel(run(k), ref(k), 1e-5, `keep from ${name}`);
    const bf = native.cast(masks.concat, 'bfloat16');
    const qb = native.cast(qkv, 'bfloat16');
    expect(native.attentionForward(qb, H, 0.5, bf, null, 0)[0].shape).toEqual([B, N, H * D]);
    // A write of a bad value forgets the range: checked, and refused.
    const k = native.copy(masks.step);
    k.write(Float32Array.from({ length: B * N }, (_, i) => (i === 3 ? 1.5 : 0)));
    expectCode(() => run(k), 'ERR_VITRIM_ARGUMENT');
    // Made by an op with no known range (affine): checked.
    expectCode(() => run(native.affine(masks.full, 4, 0)), 'ERR_VITRIM_ARGUMENT');
    // A concat with one unknown part: checked.
    expectCode(() => run(native.concat([native.affine(native.full([B, 1], 1, 'float32', 'cuda'), -1, 0), hard], 1)), 'ERR_VITRIM_ARGUMENT');
    // full outside [0, 1]: checked
    expectCode(() => run(native.full([B, N], 2, 'float32', 'cuda')), 'ERR_VITRIM_ARGUMENT');
  });

  it('a graph replay with a bad index reports at the next read', () => {
    const x = cu([1, 6, 4], 4);
    const ids = idx([0, 5, 2], [1, 3]);
    native.graphBegin();
    let y;
    try {
      y = native.gatherTokens(x, ids);
    } catch (e) {
      native.graphAbort();
      throw e;
    }
    const g = native.graphEnd();
    native.graphReplay(g);
    expect(Array.from(y.read()).length).toBe(12);
    ids.write(Int32Array.from([0, 6, 2]));
    native.graphReplay(g);
    expectCode(() => y.read(), 'ERR_VITRIM_INDEX');
    ids.write(Int32Array.from([1, 2, 3]));
    native.graphReplay(g);
    expect(y.read().length).toBe(12);
    native.graphDestroy(g);
  });

  it('rejects an unknown mode', () => {
    expectCode(() => native.setDeviceChecks('lazy' as 'deferred'), 'ERR_VITRIM_ARGUMENT');
  });
});
