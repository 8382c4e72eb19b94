/**
 * vitrim's data layer: datasets (procedural shapes, Fashion-MNIST), batching, transforms.
 *
 *   import { data } from 'vitrim';
 *   const train = data.shapes({ split: 'train', size: 32, augment: { cropPadding: 2 } });
 *   for (const b of data.batches(train, { batchSize: 128, shuffle: true, seed: 1, epoch })) ...
 */
export { batches, subset, patchFractions, type Batch, type Dataset, type BatchesOptions, type GetBatchOptions } from './dataset.js';
export { shapes, ShapesDataset, SHAPE_NAMES, type ShapesOptions, type ShapeInfo } from './shapes.js';
export {
  fashionMnist,
  FashionMnistDataset,
  FASHION_MNIST_CLASSES,
  DEFAULT_FASHION_MNIST_DIR,
  parseIdx,
  type FashionMnistOptions,
} from './fashion-mnist.js';
export {
  resizeBilinear,
  pad,
  repeatChannels,
  normalize,
  hflip,
  randomCrop,
  Pipeline,
  IMAGENET_DEFAULT_MEAN,
  IMAGENET_DEFAULT_STD,
  IMAGENET_INCEPTION_MEAN,
  IMAGENET_INCEPTION_STD,
  HALF_MEAN,
  HALF_STD,
  type NormalizeSpec,
  type AugmentOptions,
  type PipelineOptions,
  type Padding,
} from './transforms.js';
export { Rng } from './rng.js';
export { encodePng } from './png.js';
