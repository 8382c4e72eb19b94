import { memory, ops, tensor } from '../lib/index.js';
const live = () => memory()[0].liveTensors;
const l0 = live();
{
  const a = tensor(new Float32Array([1, 2]), [2], { requiresGrad: true });
  const y = ops.add(a, 2);
  y.dispose(); a.dispose();
  console.log('add no backward', live() - l0);
}
{
  const a = tensor(new Float32Array([1, 2]), [2], { requiresGrad: true });
  const y = ops.add(a, 2);
  const s = ops.sum(y); s.backward();
  s.dispose(); y.dispose(); a.grad?.dispose(); a.dispose();
  console.log('add backward', live() - l0);
}
{
  const a = tensor(new Float32Array([1, 2]), [2], { requiresGrad: true });
  const y = ops.exp(a);
  y.dispose(); a.dispose();
  console.log('exp no backward', live() - l0);
}
{
  const a = tensor(new Float32Array([1, 2]), [2], { requiresGrad: true });
  const y = ops.exp(a);
  const s = ops.sum(y); s.backward();
  s.dispose(); y.dispose(); a.grad?.dispose(); a.dispose();
  console.log('exp backward', live() - l0);
}
{
  const a = tensor(new Float32Array([1, 2]), [2], { requiresGrad: true });
  const y = ops.exp(a);
  const s = ops.sum(y); s.backward();
  s.backward();
  s.dispose(); y.dispose(); a.grad?.dispose(); a.dispose();
  console.log('exp backward twice', live() - l0);
}
