/** The policy engine (design §4): who may call which tool, prompt or resource. */
export { PolicyEngine } from './engine.js';
export type { Decision, Target, TargetKind } from './types.js';
