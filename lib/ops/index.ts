/** Functional ops: each validates its inputs, runs the native kernel and records its backward. */
export * from './elementwise.js';
export * from './reduce.js';
export * from './layout.js';
export * from './linalg.js';
export * from './norm.js';
export * from './softmax.js';
export * from './attention.js';
export * from './gather.js';
export * from './loss.js';
export * from './topk.js';
export * from './random.js';
export * from './patch.js';
export { cast, toDevice } from '../tensor.js';
