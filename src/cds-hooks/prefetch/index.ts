/**
 * CDS Hooks prefetch ({@link https://cds-hooks.hl7.org/2.0/#providing-fhir-resources-to-a-cds-service}):
 * templates derived from the CQL, token resolution, tolerant reading of `prefetch`, and fetching
 * what is missing from the FHIR server and the local copy.
 */
export { derivePrefetchPlan, derivePrefetchTemplates, withIncludes, templateKey, resourceTypeOfTemplate, PATIENT_TEMPLATE, PATIENT_SEARCH_PARAM, type PrefetchPlan, type NotPrefetchable, type DeriveOptions } from './templates.ts';
export { resolvePrefetchTemplates, prefetchTokenValues, normalizePatientId, type ResolvedTemplates, type UnresolvedTemplate } from './tokens.ts';
export { readPrefetch, classifyFhirJson, type PrefetchReading, type MissingPrefetch, type MissingReason, type PendingPage } from './read.ts';
export { assemblePatientData, mergeResources, contextResources, DEFAULT_BUDGET_MS, DEFAULT_MAX_PAGES, type AssembleInput, type AssembledPatientData, type LocalSource, type DataSource, type IncompletePrefetch } from './assemble.ts';
export type { FetchRecord } from './fhir-fetch.ts';
