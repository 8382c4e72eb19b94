/** softmax / logSoftmax over the last axis (float32 under autocast('bfloat16')). */
import { highIn, release } from '../autocast.js';
import { needsGrad, record, save } from '../autograd.js';
import { native } from '../native.js';
import type { Tensor } from '../tensor.js';
import { call, handleOf, out } from './_util.js';

function softmaxOp(x0: Tensor, log: boolean): Tensor {
  const name = log ? 'logSoftmax' : 'softmax';
  handleOf(x0, 'x', name);
  const temps: Tensor[] = [];
  const x = highIn(x0, temps);
  const hx = x.handle;
  const hy = call(name, () => native.softmaxForward(hx, log));
  const y = out(hy);
  if (needsGrad(x)) {
    const sy = save(hy);
    record(y, name, [x], (g) => [native.softmaxBackward(sy, g, log)], [sy]);
  }
  release(temps);
  return y;
}

export const softmax = (x: Tensor): Tensor => softmaxOp(x, false);
export const logSoftmax = (x: Tensor): Tensor => softmaxOp(x, true);
