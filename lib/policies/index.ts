/** Policies that decide per image which patches, heads and blocks to use. */
export { adavit, fromFile, AdaVitPolicy, type AdaVitOptions, type AdaVitTargets } from './adavit.js';
