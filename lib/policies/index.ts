/** Policies that decide per image which patches, heads and blocks to use. */
export { adavit, AdaVitPolicy, type AdaVitOptions, type AdaVitTargets } from './adavit.js';
