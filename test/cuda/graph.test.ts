// CUDA graphs: a captured sequence of ops replays with new inputs and gives what running the ops
// directly gives; capture errors leave the process usable; destroyed graphs give their pool back;
// graphStats counts the recorded kernels.
import { expect, it } from 'vitest';
import { captureGraph } from '../../lib/infer/plan.js';
import { native } from '../../lib/native.js';
import { RUN_SEED, expectCode, nt, randn } from '../helpers.js';
import { describeCuda, expectRel } from './helpers.js';

describeCuda('cuda graphs', () => {
  it('replays an MLP block on new inputs written into the captured input', () => {
    const [M, C, H] = [197, 384, 1536];
    const cu = (shape: number[], seed: number, s = 1) => native.toDevice(nt(randn(shape, RUN_SEED + seed, s), shape), 'cuda');
    const x = cu([M, C], 1), w1 = cu([H, C], 2, 0.05), b1 = cu([H], 3), w2 = cu([C, H], 4, 0.05), b2 = cu([C], 5);
    const block = () => {
      const h = native.linearFused(x, w1, b1, 'gelu', null);
      const y = native.linearFused(h, w2, b2, 'none', x);
      h.free(); // an intermediate freed inside the capture: its block is reused within the graph
      return y;
    };
    native.graphBegin();
    let y;
    try {
      y = block();
    } catch (e) {
      native.graphAbort();
      throw e;
    }
    const g = native.graphEnd();
    for (let i = 0; i < 3; i++) {
      x.write(randn([M, C], RUN_SEED + 10 + i));
      native.graphReplay(g);
      const want = block();
      expectRel(y, want, 1e-6, `replay ${i}`);
      want.free();
    }
    native.graphDestroy(g);
    native.graphDestroy(g); // idempotent
    expectCode(() => native.graphReplay(g), 'ERR_VITRIM_ARGUMENT');
  });

  it('graphStats counts the recorded launches: five one-kernel ops are five kernel nodes', () => {
    const x = native.toDevice(nt(randn([1000], RUN_SEED + 20), [1000]), 'cuda');
    native.graphBegin();
    const ys = [];
    try {
      for (let i = 0; i < 5; i++) ys.push(native.affine(x, 1 + i, 0.5)); // one elementwise kernel each
    } catch (e) {
      native.graphAbort();
      throw e;
    }
    const g = native.graphEnd();
    expect(native.graphStats(g)).toEqual({ nodes: 5, kernels: 5 });
    native.graphReplay(g);
    expectRel(ys[4], Array.from(randn([1000], RUN_SEED + 20), (v) => 5 * v + 0.5), 1e-6, 'replayed affine');
    native.graphDestroy(g);
    expectCode(() => native.graphStats(g), 'ERR_VITRIM_ARGUMENT');
    for (const y of ys) y.free();
    x.free();
  });

  it('a host read inside a capture fails, is aborted, and work goes on', () => {
    const x = native.full([8], 1, 'float32', 'cuda');
    native.graphBegin();
    expect(() => {
      const y = native.affine(x, 2, 0);
      y.read(); // synchronises with the host: not capturable
    }).toThrow();
    native.graphAbort();
    expectCode(() => native.graphEnd(), 'ERR_VITRIM_ARGUMENT');
    expect(Array.from(native.affine(x, 2, 1).read())).toEqual(new Array(8).fill(3));
  });

  it('a host upload inside a capture is ERR_VITRIM_ARGUMENT and leaves the capture usable', () => {
    const x = native.full([8], 1, 'float32', 'cuda');
    const t = native.full([8], 0, 'float32', 'cuda');
    native.graphBegin();
    let y;
    try {
      y = native.affine(x, 2, 0);
      expect(expectCode(() => t.write(new Float32Array(8).fill(5)), 'ERR_VITRIM_ARGUMENT')).toMatch(/graph/);
      expectCode(() => native.toDevice(nt(new Float32Array(8), [8]), 'cuda'), 'ERR_VITRIM_ARGUMENT');
    } catch (e) {
      native.graphAbort();
      throw e;
    }
    const g = native.graphEnd();
    x.write(new Float32Array(8).fill(4));
    native.graphReplay(g);
    expect(Array.from(y.read())).toEqual(new Array(8).fill(8));
    native.graphDestroy(g);
  });

  // An async fn would have only its part before the first await recorded: refused, nothing
  // recorded, no capture left open, and its later rejection not left unhandled (vitest fails a run
  // on one: the wait below would show it).
  it('captureGraph refuses an async fn, aborts the capture, and work goes on', async () => {
    const x = native.full([8], 1, 'float32', 'cuda');
    const fn = async () => {
      native.affine(x, 2, 0);
      await null;
      throw new Error('rejected after the call returned');
    };
    expectCode(() => captureGraph(fn as never), 'ERR_VITRIM_ARGUMENT');
    expectCode(() => native.graphEnd(), 'ERR_VITRIM_ARGUMENT'); // no capture is open
    const { graph, result } = captureGraph(() => native.affine(x, 2, 1));
    graph.replay();
    expect(Array.from(result.read())).toEqual(new Array(8).fill(3));
    graph.dispose();
    await new Promise((r) => setTimeout(r, 20));
  });

  it('refuses nested captures', () => {
    native.graphBegin();
    expectCode(() => native.graphBegin(), 'ERR_VITRIM_ARGUMENT');
    native.graphAbort();
  });
});
