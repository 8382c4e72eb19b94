/** vitrim: adaptive vision transformers on a C++ (and CUDA) Node-API core. */
import { int } from './args.js';
import { rethrow } from './errors.js';
import { native } from './native.js';

export { Tensor, tensor, full, zeros, ones, tidy, keep, memory, emptyCache, cast, toDevice, type CreateOptions } from './tensor.js';
export { backward, noGrad, isGradEnabled } from './autograd.js';
export { autocast, autocastDtype, type AutocastDtype } from './autocast.js';
export { backends, cudaAvailable, resolveDevice, setAllowTf32, setDeviceChecks, deviceChecks, synchronize, synchronizeAsync, type BackendInfo } from './backends.js';
export { VitrimError, ArgumentError, ShapeError, DTypeError, DeviceError, IndexError, DisposedError, MemoryError, IOError } from './errors.js';
export * as ops from './ops/index.js';
export { Module, Parameter, parameter } from './nn/module.js';
export { Linear, LayerNorm } from './nn/layers.js';
export { AdamW, clipGradNorm } from './train/optim.js';
export { Trainer, evaluate, matchedRandom, type MatchedRandom, type TrainerOptions, type FitOptions, type EvalResult, type EvalOptions, type EpochRecord, type Precision } from './train/trainer.js';
export * as data from './data/index.js';
export * as policies from './policies/index.js';
export { adavitInfer, type InferResult, type AdaVitInferOptions } from './infer/adavit-infer.js';
export { createInferencePlan, captureGraph, CudaGraph, type InferencePlan, type PlanOptions } from './infer/plan.js';
export { denseMacs } from './infer/flops.js';
export * as safetensors from './io/safetensors.js';
export * as vit from './models.js';
export { VisionTransformer, type VitConfig } from './nn/vit.js';
export type { DType, Device } from './native.js';

/** Sets the CPU thread count, 1 to 256 (default: all cores; env VITRIM_NUM_THREADS). ArgumentError otherwise. */
export function setNumThreads(n: number): void {
  int(n, 'n', 'setNumThreads', 1, 256);
  try {
    native.setNumThreads(n);
  } catch (e) {
    rethrow(e, 'setNumThreads');
  }
}
