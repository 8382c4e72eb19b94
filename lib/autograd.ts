/**
 * Define-by-run reverse-mode autograd. Each differentiable op, when some input needs a gradient and
 * grad mode is on, attaches a GradNode to its output: the inputs, the native handles it saved, and a
 * backward function from dL/d(output) to dL/d(inputs), written against native handles (so backward
 * creates no scope-tracked tensors). backward() walks the graph in reverse topological order,
 * accumulates gradients, writes leaf gradients to `.grad`, then frees what the graph saved (unless
 * retainGraph).
 */
import { boolOpt, optsOf, refuseAsync, show } from './args.js';
import { ArgumentError, DisposedError, rethrow } from './errors.js';
import { freeOnThrow } from './handles.js';
import { native, type NativeTensor } from './native.js';
import { Tensor, untracked } from './tensor.js';

export interface GradNode {
  readonly name: string;
  /** The op's tensor inputs; null where no gradient flows (indices, constants). */
  readonly inputs: readonly (Tensor | null)[];
  /** dL/d(output) -> dL/d(input) per input (null: none). Must not free `g`. */
  readonly backward: (g: NativeTensor) => (NativeTensor | null)[];
  saved: NativeTensor[];
  released: boolean;
  /** Order of recording (graphMark()). */
  readonly seq: number;
}

let nodeSeq = 0;
/** The seq the next recorded node gets: nodes with seq >= a mark were recorded after it. */
export function graphMark(): number {
  return nodeSeq;
}

/**
 * Frees what the nodes recorded since `mark` and reachable from `from` saved for backward, except
 * the nodes a tensor of `keepers` reaches. For a tidy scope that threw: no later backward() can
 * reach those nodes but through a kept tensor, and what they saved (a step's activations) would
 * otherwise wait for the GC, which does not see device memory. Nodes recorded before the mark (a
 * graph the caller built first) are left alone. A backward() through a freed node is the "already
 * freed" error.
 */
export function releaseSince(mark: number, from: Iterable<Tensor>, keepers: Iterable<Tensor>): void {
  const walk = (roots: Iterable<Tensor>, visit: (n: GradNode) => boolean) => {
    const stack = [...roots];
    const seen = new Set<GradNode>();
    while (stack.length) {
      const n = stack.pop()!.gradFn;
      if (!n || n.seq < mark || seen.has(n)) continue;
      seen.add(n);
      if (!visit(n)) continue;
      for (const x of n.inputs) if (x) stack.push(x);
    }
  };
  const kept = new Set<GradNode>();
  walk(keepers, (n) => (kept.add(n), true));
  walk(from, (n) => {
    if (kept.has(n)) return false;
    for (const h of n.saved) h.free();
    n.saved = [];
    n.released = true;
    return true;
  });
}

let gradEnabled = true;

/**
 * Runs fn with gradient recording off (inference, evaluation, optimiser steps). fn must be
 * synchronous: what an async fn runs after its first await would record gradients again.
 */
export function noGrad<R>(fn: () => R): R {
  if (typeof fn !== 'function') throw new ArgumentError(`noGrad: fn must be a function, got ${show(fn)}`);
  const prev = gradEnabled;
  gradEnabled = false;
  let r: R;
  try {
    r = fn();
  } finally {
    gradEnabled = prev;
  }
  refuseAsync(r, 'noGrad(fn)', 'what runs after its first await would record gradients');
  return r;
}

export function isGradEnabled(): boolean {
  return gradEnabled;
}

/** True when an op over these inputs must record a node. */
export function needsGrad(...xs: (Tensor | null | undefined)[]): boolean {
  if (!gradEnabled) return false;
  for (const x of xs) if (x && (x.requiresGrad || x.gradFn)) return true;
  return false;
}

/** A handle of its own on h's storage, for a node to keep through backward. */
export function save(h: NativeTensor): NativeTensor {
  return h.reshape(h.shape);
}

/** Attaches a node to `out`. `saved` are handles made with save() (freed when the node is released). */
export function record(
  out: Tensor,
  name: string,
  inputs: (Tensor | null | undefined)[],
  backward: (g: NativeTensor) => (NativeTensor | null)[],
  saved: NativeTensor[] = [],
): Tensor {
  out.gradFn = {
    name,
    inputs: inputs.map((x) => (x && (x.requiresGrad || x.gradFn) ? x : null)),
    backward,
    saved,
    released: false,
    seq: nodeSeq++,
  };
  return out;
}

/** h cast to dtype; frees h. */
function castFree(h: NativeTensor, dtype: NativeTensor['dtype']): NativeTensor {
  const c = native.cast(h, dtype);
  h.free();
  return c;
}

function accumulate(map: Map<Tensor, NativeTensor>, t: Tensor, g: NativeTensor): void {
  const prev = map.get(t);
  if (!prev) {
    map.set(t, g);
    return;
  }
  map.set(t, native.binary('add', prev, g));
  prev.free();
  g.free();
}

/** Runs t's node on its gradient g (consumed) and accumulates what it returns into its inputs'. */
function backwardNode(grads: Map<Tensor, NativeTensor>, node: GradNode, t: Tensor, g: NativeTensor): void {
  let gin: (NativeTensor | null)[];
  try {
    gin = node.backward(g);
  } catch (e) {
    rethrow(e, `backward of ${node.name}`);
  }
  grads.delete(t);
  g.free();
  node.inputs.forEach((x, k) => {
    const gx = gin[k];
    if (!gx) return;
    if (!x) {
      gx.free();
      return;
    }
    // A gradient has its tensor's dtype (backward ops return their inputs' dtype; this guards the
    // accumulation of float32 and bfloat16 contributions under mixed precision).
    accumulate(grads, x, gx.dtype !== x.dtype && x.dtype !== 'int32' ? castFree(gx, x.dtype) : gx);
  });
}

/** Adds a leaf's gradient g (consumed) into its .grad (when it requires one). */
function accumulateLeaf(grads: Map<Tensor, NativeTensor>, t: Tensor, g: NativeTensor): void {
  if (!t.requiresGrad || t.isDisposed) {
    grads.delete(t);
    g.free();
    return;
  }
  const gt = g.shape.join() === t.shape.join() ? g : g.reshape([...t.shape]);
  if (t.grad && !t.grad.isDisposed) {
    const sum = native.binary('add', t.grad.handle, gt);
    t.grad.dispose();
    t.grad = untracked(sum);
    if (gt !== g) gt.free();
  } else t.grad = untracked(gt);
  grads.delete(t);
  if (gt !== g) g.free();
}

/**
 * Backpropagates from `root`. A non-scalar root needs `grad` (same shape). Leaves with requiresGrad
 * receive (accumulate into) `.grad`. The graph is freed afterwards unless opts.retainGraph.
 */
export function backward(root: Tensor, grad?: Tensor | null, opts?: { retainGraph?: boolean } | null): void {
  if (!(root instanceof Tensor)) throw new ArgumentError('backward: root must be a Tensor');
  // options checked before any gradient is accumulated: a bad one must leave .grad untouched
  const retainGraph = boolOpt(optsOf(opts, 'backward').retainGraph, false, 'retainGraph', 'backward');
  if (root.isDisposed) throw new DisposedError('backward: the tensor was disposed');
  if (!root.gradFn && !root.requiresGrad) {
    throw new ArgumentError('backward: this tensor does not depend on anything that requires a gradient (or its graph was already freed by an earlier backward())');
  }
  if (root.gradFn?.released) throw new ArgumentError('backward: the graph was freed by an earlier backward(); pass { retainGraph: true } to the first call');
  // Reverse topological order by iterative DFS.
  const order: Tensor[] = [];
  const seen = new Set<Tensor>();
  const stack: [Tensor, number][] = [[root, 0]];
  seen.add(root);
  while (stack.length) {
    const top = stack[stack.length - 1];
    const node = top[0].gradFn;
    const inputs = node ? node.inputs : [];
    if (top[1] < inputs.length) {
      const next = inputs[top[1]++];
      if (next && !seen.has(next)) {
        seen.add(next);
        stack.push([next, 0]);
      }
    } else {
      order.push(top[0]);
      stack.pop();
    }
  }
  const grads = new Map<Tensor, NativeTensor>();
  try {
    if (grad) {
      if (!(grad instanceof Tensor)) throw new ArgumentError('backward: grad must be a Tensor');
      if (grad.shape.join() !== root.shape.join()) throw new ArgumentError(`backward: grad shape [${grad.shape}] differs from the root's [${root.shape}]`);
      const g0 = grad.device === root.device ? native.copy(grad.handle) : native.toDevice(grad.handle, root.device);
      grads.set(root, g0); // before the cast: freed by the catch below if that fails
      if (g0.dtype !== root.dtype && root.dtype !== 'int32') grads.set(root, castFree(g0, root.dtype));
    } else {
      if (root.size !== 1) throw new ArgumentError(`backward: a non-scalar root (shape [${root.shape}]) needs an explicit grad`);
      grads.set(root, native.full([...root.shape], 1, root.dtype === 'int32' ? 'float32' : root.dtype, root.device));
    }
    for (let i = order.length - 1; i >= 0; i--) {
      const t = order[i];
      const g = grads.get(t);
      if (!g) continue;
      const node = t.gradFn;
      if (node?.released) throw new ArgumentError(`backward: the graph through '${node.name}' was already freed`);
      // Every handle this step makes (a node's temporaries and gradients, their sums) is freed at once
      // when it throws midway (out of device memory at a node's second allocation, say); g stays in
      // `grads` until it is consumed, so the catch below frees it.
      freeOnThrow(() => (node ? backwardNode(grads, node, t, g) : accumulateLeaf(grads, t, g)));
    }
  } catch (e) {
    for (const g of grads.values()) g.free();
    rethrow(e, 'backward');
  }
  if (!retainGraph) {
    for (const t of order) {
      const node = t.gradFn;
      if (!node) continue;
      for (const h of node.saved) h.free();
      node.saved = [];
      node.released = true;
      t.gradFn = null;
    }
  }
}
