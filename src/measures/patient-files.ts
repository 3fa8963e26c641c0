import { createReadStream } from 'node:fs';
import { readdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { createInterface } from 'node:readline';
import type { FhirResource } from '../cql-engine/fhir-model.ts';
import type { PatientData } from '../cql-engine/patient-source.ts';
import { CairnError } from '../domain/errors.ts';

/**
 * Reading patients from files for `cairn measure`: FHIR Bundles (`.json`, one patient each, or
 * several patients grouped by reference) and Bulk Data NDJSON folders (`.ndjson`), grouped by
 * patient. The nightly batch reads patients from the warehouse instead; this is for files.
 */

interface BundleJson {
  readonly resourceType?: unknown;
  readonly entry?: readonly { readonly fullUrl?: string; readonly resource?: FhirResource }[];
}

const PATIENT_FIELDS = ['subject', 'patient', 'beneficiary'] as const;

/** patientIdOf is the id of the patient a resource belongs to (`Patient/<id>` or a `fullUrl` alias), if any. */
function patientIdOf(resource: FhirResource, aliases: ReadonlyMap<string, string>): string | undefined {
  if (resource.resourceType === 'Patient') return resource.id;
  for (const field of PATIENT_FIELDS) {
    const reference = (resource[field] as { reference?: unknown } | undefined)?.reference;
    if (typeof reference !== 'string') continue;
    const alias = aliases.get(reference);
    if (alias !== undefined) return alias;
    const match = /(?:^|\/)Patient\/([^/]+)$/.exec(reference);
    if (match?.[1] !== undefined) return match[1];
  }
  return undefined;
}

/**
 * groupByPatient splits resources into one resource list per Patient (in order of first
 * appearance); resources that name no patient (Organization, Medication, ...) go to every patient.
 * Resources of patients with no Patient resource are dropped.
 */
export function groupByPatient(resources: Iterable<FhirResource>, aliases: ReadonlyMap<string, string> = new Map()): PatientData[] {
  const byPatient = new Map<string, FhirResource[]>();
  const shared: FhirResource[] = [];
  const patients = new Set<string>();
  for (const resource of resources) {
    const id = patientIdOf(resource, aliases);
    if (id === undefined) {
      shared.push(resource);
      continue;
    }
    if (resource.resourceType === 'Patient') patients.add(id);
    let list = byPatient.get(id);
    if (list === undefined) byPatient.set(id, (list = []));
    list.push(resource);
  }
  return [...byPatient.entries()].filter(([id]) => patients.has(id)).map(([, list]) => [...list, ...shared]);
}

function bundlePatients(json: unknown, file: string): PatientData[] {
  const bundle = json as BundleJson;
  if (bundle?.resourceType !== 'Bundle' || !Array.isArray(bundle.entry)) {
    throw new CairnError('INPUT_INVALID', `${file} is not a FHIR Bundle with entry[]`);
  }
  const resources = bundle.entry.map((e) => e.resource).filter((r): r is FhirResource => typeof r?.resourceType === 'string');
  const patients = resources.filter((r) => r.resourceType === 'Patient');
  if (patients.length <= 1) return [{ resourceType: 'Bundle', entry: resources.map((resource) => ({ resource })) }];
  const aliases = new Map<string, string>();
  for (const entry of bundle.entry) {
    if (entry.resource?.resourceType === 'Patient' && entry.fullUrl !== undefined && entry.resource.id !== undefined) aliases.set(entry.fullUrl, entry.resource.id);
  }
  return groupByPatient(resources, aliases);
}

async function* ndjsonResources(file: string): AsyncGenerator<FhirResource> {
  const lines = createInterface({ input: createReadStream(file, 'utf8'), crlfDelay: Infinity });
  let n = 0;
  for await (const line of lines) {
    n++;
    if (line.trim() === '') continue;
    try {
      yield JSON.parse(line) as FhirResource;
    } catch (error) {
      throw new CairnError('INPUT_INVALID', `${file}:${n} is not a JSON resource: ${(error as Error).message}`);
    }
  }
}

/**
 * readPatients yields one patient's data at a time from each path: a Bundle file, or a folder of
 * Bundle files (`.json`) and/or Bulk Data NDJSON files (`.ndjson`, grouped by patient reference
 * across the folder's files; read line by line, but a folder's patients are held until the folder
 * is read). Files are taken in name order, so output order is stable.
 */
export async function* readPatients(paths: readonly string[]): AsyncGenerator<PatientData> {
  for (const input of paths) {
    const info = await stat(input).catch(() => undefined);
    if (info === undefined) throw new CairnError('INPUT_INVALID', `--patients ${input} does not exist`);
    if (info.isFile()) {
      yield* bundlePatients(JSON.parse(await readFile(input, 'utf8')) as unknown, input);
      continue;
    }
    const names = (await readdir(input)).sort();
    for (const name of names.filter((n) => n.endsWith('.json'))) {
      const file = path.join(input, name);
      yield* bundlePatients(JSON.parse(await readFile(file, 'utf8')) as unknown, file);
    }
    const ndjson = names.filter((n) => n.endsWith('.ndjson'));
    if (ndjson.length > 0) {
      const resources: FhirResource[] = [];
      for (const name of ndjson) for await (const resource of ndjsonResources(path.join(input, name))) resources.push(resource);
      yield* groupByPatient(resources);
    }
  }
}
