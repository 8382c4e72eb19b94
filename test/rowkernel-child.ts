/**
 * Child process for the per-ISA tests (run with VITRIM_ISA=generic|avx2 to force a row-kernel
 * build): reads {case: ...} JSON on stdin, runs attention forward/backward and softmax forward/
 * backward natively, and prints the outputs and the ISA in use as JSON. Not a test file itself.
 */
import { native } from '../lib/native.js';

interface Input {
  B: number; N: number; H: number; D: number; scale: number; eps: number;
  qkv: number[]; keep: number[] | null; gate: number[] | null; gout: number[];
  sx: number[]; sshape: number[]; sgy: number[];
}

let raw = '';
process.stdin.on('data', (d) => (raw += d));
process.stdin.on('end', () => {
  const c = JSON.parse(raw) as Input;
  const f = (a: number[], s: number[]) => native.fromArray(Float32Array.from(a), s, 'float32');
  const C = c.H * c.D;
  const qkv = f(c.qkv, [c.B, c.N, 3 * C]);
  const keep = c.keep ? f(c.keep, [c.B, c.N]) : null;
  const gate = c.gate ? f(c.gate, [c.B, c.H]) : null;
  const [out, stats] = native.attentionForward(qkv, c.H, c.scale, keep, gate, c.eps);
  const [gqkv, gkeep, ggate] = native.attentionBackward(f(c.gout, [c.B, c.N, C]), qkv, c.H, c.scale, keep, gate, c.eps, out, stats);
  const res: Record<string, unknown> = { isa: native.info().isa };
  const arr = (t: { read(): ArrayLike<number> } | null) => (t ? Array.from(t.read()) : null);
  Object.assign(res, { out: arr(out), gqkv: arr(gqkv), gkeep: arr(gkeep), ggate: arr(ggate) });
  for (const log of [false, true]) {
    const y = native.softmaxForward(f(c.sx, c.sshape), log);
    const gx = native.softmaxBackward(y, f(c.sgy, c.sshape), log);
    res[log ? 'logsoftmax' : 'softmax'] = arr(y);
    res[log ? 'glogsoftmax' : 'gsoftmax'] = arr(gx);
  }
  process.stdout.write(JSON.stringify(res));
});
