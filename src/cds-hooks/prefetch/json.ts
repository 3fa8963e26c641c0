/** Narrowing helpers for the untyped JSON of CDS Hooks requests and FHIR responses. */
import type { FhirResource } from '../../cql-engine/fhir-model.ts';

import { isRecord } from '../../domain/json.ts';

export { isRecord };

/** isResource is true for a JSON object with a non-empty string `resourceType`. */
export function isResource(value: unknown): value is FhirResource {
  return isRecord(value) && typeof value.resourceType === 'string' && value.resourceType.length > 0;
}

/** compare orders strings by code unit, independent of locale, so output is the same everywhere. */
export function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
