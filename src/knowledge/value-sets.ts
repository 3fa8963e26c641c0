import { z } from 'zod';
import type { Problem } from '../domain/errors.ts';
import { oidOf, type ValueSetExpansion } from '../cql-engine/terminology.ts';
import { zodProblems } from './zod-problems.ts';

/** The parts of a FHIR R4 ValueSet ({@link https://hl7.org/fhir/R4/valueset.html}) Cairn evaluates with. */
const ValueSetResource = z.looseObject({
  resourceType: z.literal('ValueSet'),
  url: z.string().min(1, 'a value set needs its canonical url'),
  version: z.string().optional(),
  identifier: z.array(z.looseObject({ system: z.string().optional(), value: z.string().optional() })).optional(),
  expansion: z.looseObject({
    contains: z
      .array(
        z.looseObject({
          system: z.string().min(1),
          code: z.string().min(1),
          version: z.string().optional(),
          display: z.string().optional(),
        }),
      )
      .optional(),
  }, { error: 'Cairn evaluates expanded value sets: add expansion.contains' }),
});

const BundleOfValueSets = z.looseObject({
  resourceType: z.literal('Bundle'),
  entry: z.array(z.looseObject({ resource: z.unknown() })).optional(),
});

/** ParsedValueSets is what one value-set file contributes. */
export interface ParsedValueSets {
  readonly expansions: ValueSetExpansion[];
  readonly problems: Problem[];
}

/** parseValueSetFile reads a ValueSet or a Bundle of them; each bad resource is a problem at its JSON path. */
export function parseValueSetFile(file: string, json: unknown): ParsedValueSets {
  const expansions: ValueSetExpansion[] = [];
  const problems: Problem[] = [];
  const take = (resource: unknown, path: string): void => {
    const parsed = ValueSetResource.safeParse(resource);
    if (!parsed.success) {
      problems.push(...zodProblems('VALUESET_INVALID', file, parsed.error, path));
      return;
    }
    expansions.push(toExpansion(parsed.data));
  };
  const bundle = BundleOfValueSets.safeParse(json);
  if (bundle.success) {
    bundle.data.entry?.forEach((entry, i) => {
      const resource = entry.resource as { resourceType?: unknown } | undefined;
      if (resource?.resourceType === 'ValueSet') take(resource, `$.entry[${i}].resource`);
    });
  } else {
    take(json, '$');
  }
  return { expansions, problems };
}

function toExpansion(vs: z.infer<typeof ValueSetResource>): ValueSetExpansion {
  const oids = new Set<string>();
  for (const id of vs.identifier ?? []) {
    const oid = id.value ? oidOf(id.value) : undefined;
    if (oid) oids.add(oid);
  }
  const urlOid = oidOf(vs.url);
  if (urlOid) oids.add(urlOid);
  return {
    url: vs.url,
    version: vs.version,
    oids: [...oids],
    codes: (vs.expansion.contains ?? []).map((c) => ({
      system: c.system,
      code: c.code,
      ...(c.version === undefined ? {} : { version: c.version }),
      ...(c.display === undefined ? {} : { display: c.display }),
    })),
  };
}
