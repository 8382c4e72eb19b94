/** softmax / logSoftmax over the last axis. */
import { needsGrad, record, save } from '../autograd.js';
import { native } from '../native.js';
import type { Tensor } from '../tensor.js';
import { call, handleOf, out } from './_util.js';

function softmaxOp(x: Tensor, log: boolean): Tensor {
  const name = log ? 'logSoftmax' : 'softmax';
  const hx = handleOf(x, 'x', name);
  const hy = call(name, () => native.softmaxForward(hx, log));
  const y = out(hy);
  if (needsGrad(x)) {
    const sy = save(hy);
    record(y, name, [x], (g) => [native.softmaxBackward(sy, g, log)], [sy]);
  }
  return y;
}

export const softmax = (x: Tensor): Tensor => softmaxOp(x, false);
export const logSoftmax = (x: Tensor): Tensor => softmaxOp(x, true);
