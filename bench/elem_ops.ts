/**
 * Micro-benchmark of the elementwise / reduce / layout / gather / patch CPU ops at ViT-S/16 training
 * shapes (B=64, N=197, C=384, MLP 1536). Prints median ms and effective GB/s (bytes read + written).
 * Run: npx tsx bench/elem_ops.ts   (VITRIM_NUM_THREADS to pin the thread count)
 */
import { native, type NativeTensor } from '../lib/native.js';

function rand(shape: number[]): NativeTensor {
  const n = shape.reduce((a, b) => a * b, 1);
  const d = new Float32Array(n);
  for (let i = 0; i < n; i++) d[i] = Math.random() * 2 - 1;
  return native.fromArray(d, shape, 'float32');
}

function time(name: string, bytes: number, fn: () => NativeTensor, reps = 7): void {
  fn().free(); // warm-up
  const ts: number[] = [];
  for (let r = 0; r < reps; r++) {
    const t0 = process.hrtime.bigint();
    const y = fn();
    ts.push(Number(process.hrtime.bigint() - t0) / 1e6);
    y.free();
  }
  ts.sort((a, b) => a - b);
  const ms = ts[Math.floor(reps / 2)];
  console.log(`${name.padEnd(44)} ${ms.toFixed(2).padStart(8)} ms ${(bytes / ms / 1e6).toFixed(2).padStart(7)} GB/s`);
}

const B = 64, N = 197, C = 384, H = 1536;
const x = rand([B, N, C]);
const xh = rand([B, N, H]);
const bias = rand([C]);
const col = rand([B, N, 1]);
const idx = native.fromArray(Int32Array.from({ length: B * 98 }, () => Math.floor(Math.random() * N)), [B, 98], 'int32');
const img = rand([B, 3, 224, 224]);
const e = B * N * C * 4, eh = B * N * H * 4;
console.log(`threads ${native.info().threads}, isa ${native.info().isa}`);
time('binary add [B,N,C]+[B,N,C]', 3 * e, () => native.binary('add', x, x));
time('binary add [B,N,C]+[C]', 2 * e, () => native.binary('add', x, bias));
time('binary mul [B,N,C]*[B,N,1]', 2 * e, () => native.binary('mul', x, col));
time('unary gelu [B,N,4C]', 2 * eh, () => native.unary('gelu', xh));
time('unaryBackward gelu [B,N,4C]', 4 * eh, () => native.unaryBackward('gelu', xh, xh, xh));
time('unary exp [B,N,C]', 2 * e, () => native.unary('exp', x));
time('affine [B,N,C]', 2 * e, () => native.affine(x, 0.5, 1));
time('sumTo [B,N,C] -> [C]', e, () => native.sumTo(x, [C]));
time('reduce sum [B,N,C] axis -1', e, () => native.reduce('sum', x, [-1], false));
time('reduce max [B,N,C] axis 1', e, () => native.reduce('max', x, [1], false));
const qkv = rand([B, N, 3, 6, 64]);
time('permute qkv [B,N,3,6,64] -> [3,B,6,N,64]', 2 * 3 * e, () => native.permute(qkv, [2, 0, 3, 1, 4]));
time('permute transpose [B,N,C] -> [B,C,N]', 2 * e, () => native.permute(x, [0, 2, 1]));
time('slice [B,N,C] tokens 1..N', 2 * e, () => native.slice(x, 1, 1, N));
time('concat 2x[B,N,C] axis 1', 4 * e, () => native.concat([x, x], 1));
time('gatherTokens keep 98 of 197', e, () => native.gatherTokens(x, idx));
const g = native.gatherTokens(x, idx);
time('scatterTokens 98 -> 197', e * 1.5, () => native.scatterTokens(g, idx, N));
time('patchify [B,3,224,224] p=16', 2 * B * 3 * 224 * 224 * 4, () => native.patchify(img, 16));
