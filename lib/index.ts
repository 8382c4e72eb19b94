/** vitrim: adaptive vision transformers on a C++ (and CUDA) Node-API core. */
import { native } from './native.js';

export { Tensor, tensor, full, zeros, ones, tidy, keep, memory, emptyCache } from './tensor.js';
export { backward, noGrad, isGradEnabled } from './autograd.js';
export * from './errors.js';
export * as ops from './ops/index.js';
export { Module, Parameter, parameter } from './nn/module.js';
export { Linear, LayerNorm } from './nn/layers.js';
export { AdamW } from './train/optim.js';
export { Trainer, evaluate, type TrainerOptions, type FitOptions, type EvalResult, type EpochRecord } from './train/trainer.js';
export * as data from './data/index.js';
export * as policies from './policies/index.js';
export { adavitInfer, type InferResult, type AdaVitInferOptions } from './infer/adavit-infer.js';
export { denseMacs } from './infer/flops.js';
export * as safetensors from './io/safetensors.js';
export * as vit from './models.js';
export { VisionTransformer, type VitConfig } from './nn/vit.js';
export type { DType, Device } from './native.js';

export interface BackendInfo {
  device: 'cpu' | 'cuda';
  available: boolean;
  threads?: number;
  isa?: string;
  gemm?: string;
  reason?: string;
}

/** Which backends can run here, and why CUDA cannot when it cannot. */
export function backends(): BackendInfo[] {
  const i = native.info();
  return [
    { device: 'cpu', available: true, threads: i.threads, isa: i.isa, gemm: native.gemmIsa() },
    {
      device: 'cuda',
      available: false,
      reason: i.cudaCompiled
        ? 'the CUDA backend library (libvitrim_cuda.so) is not part of this build yet'
        : 'this build has no CUDA sources compiled (no CUDA toolkit found at build time)',
    },
  ];
}

/** Sets the CPU thread count (default: all cores; env VITRIM_NUM_THREADS). */
export function setNumThreads(n: number): void {
  native.setNumThreads(n);
}
