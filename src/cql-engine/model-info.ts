/**
 * Model info for the in-process CQL compiler: the CQL System model (ours) and FHIR 4.0.1 (the
 * model-info XML cql-exec-fhir ships, the same one the runtime uses, so compile-time and run-time
 * types agree). See CQL §Appendix: Model Info, https://cql.hl7.org/elm.html#modelinfo.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import type { ModelManager } from '@cqframework/cql/cql-to-elm';
import type { CqlToElm } from './translator.ts';
import { SYSTEM_MODEL_INFO_XML } from './system-model-info.ts';

/** FHIR_VERSION is the one FHIR version the compiler has model info for. */
export const FHIR_VERSION = '4.0.1';

/** fhirModelInfoPath is the FHIR 4.0.1 model-info XML inside the cql-exec-fhir package. */
export function fhirModelInfoPath(): string {
  return createRequire(import.meta.url).resolve('cql-exec-fhir/lib/modelInfos/fhir-modelinfo-4.0.1.xml');
}

/** ModelInfoSet holds the model-info XML the compiler serves and a digest of all of it (for cache keys). */
export interface ModelInfoSet {
  readonly fhirXml: string;
  readonly digest: string;
}

/** loadModelInfoSet reads the FHIR model info once (760 KB); parse cost is paid later, lazily. */
export function loadModelInfoSet(): ModelInfoSet {
  const fhirXml = readFileSync(fhirModelInfoPath(), 'utf8');
  const digest = createHash('sha256').update(SYSTEM_MODEL_INFO_XML).update('\0').update(fhirXml).digest('hex');
  return { fhirXml, digest };
}

/**
 * createModelManager returns a ModelManager serving System and FHIR 4.0.1. The manager parses a
 * model the first time a library uses it and keeps it, so share one manager across compilations.
 */
export function createModelManager({ ModelManager, createModelInfoProvider, stringAsSource }: CqlToElm, models: ModelInfoSet): ModelManager {
  // Default model-info loading would look for bundled resources the JS build does not have.
  const manager = new ModelManager(undefined, false);
  const provider = createModelInfoProvider((id, _system, version) => {
    if (id === 'System') return stringAsSource(SYSTEM_MODEL_INFO_XML);
    if (id === 'FHIR' && (version === null || version === undefined || version === FHIR_VERSION)) {
      return stringAsSource(models.fhirXml);
    }
    return null;
  });
  manager.modelInfoLoader.registerModelInfoProvider(provider);
  return manager;
}
