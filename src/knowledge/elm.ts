import { z } from 'zod';

/** The few parts of an ELM library document ({@link https://cql.hl7.org/elm.html}) the loader checks. */
const ElmDocument = z.looseObject({
  library: z.looseObject({
    identifier: z.looseObject({ id: z.string(), version: z.string().optional() }),
    valueSets: z.looseObject({ def: z.array(z.looseObject({ name: z.string(), id: z.string(), version: z.string().optional() })) }).optional(),
    statements: z.looseObject({ def: z.array(z.looseObject({ name: z.string(), type: z.string().optional(), context: z.string().optional() })) }).optional(),
  }),
});

export interface ElmSummary {
  readonly name: string;
  readonly version: string | undefined;
  /** Expression definitions (not functions), which rules may read as facts. */
  readonly defines: readonly string[];
  readonly valueSets: readonly { readonly name: string; readonly id: string; readonly version: string | undefined }[];
}

/** summarizeElm reads names, defines and value-set references from an ELM document. */
export function summarizeElm(elm: unknown): ElmSummary {
  const { library } = ElmDocument.parse(elm);
  return {
    name: library.identifier.id,
    version: library.identifier.version,
    defines: (library.statements?.def ?? [])
      .filter((def) => def.type !== 'FunctionDef')
      .map((def) => def.name),
    valueSets: (library.valueSets?.def ?? []).map((vs) => ({ name: vs.name, id: vs.id, version: vs.version })),
  };
}
