/** Model presets for the built-in data sets (the CLI's --model; timm names are accepted too). */
import type { VitConfig } from './vit.js';

export const PRESETS: Record<string, Partial<VitConfig>> = {
  'fmnist-vit': { imgSize: 28, patchSize: 4, inChans: 1, embedDim: 128, depth: 6, numHeads: 4, mlpRatio: 2, numClasses: 10 },
  'shapes-vit': { imgSize: 32, patchSize: 4, inChans: 3, embedDim: 96, depth: 4, numHeads: 3, mlpRatio: 2, numClasses: 10 },
};

