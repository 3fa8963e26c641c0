/**
 * CDS Hooks 2.0 hook ids Cairn serves ({@link https://cds-hooks.org/hooks/}).
 * Kept in domain/ because rules, the evaluation core and the HTTP service all name them.
 */
export const HOOK_IDS = [
  'patient-view',
  'order-select',
  'order-sign',
  'encounter-start',
  'encounter-discharge',
  'appointment-book',
] as const;

export type HookId = (typeof HOOK_IDS)[number];

/** Where a rule runs besides hooks: the nightly population batch. */
export const BATCH = 'batch' as const;
