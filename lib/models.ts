/** `vit` namespace: `vit.create(name | config)`, `vit.fromFile(path)`, `vit.configs`. */
export { create, fromFile, inferConfig, parameterCount, resolveConfig, VIT_CONFIGS as configs } from './nn/vit.js';
