/**
 * The reference CQL translator (@cqframework/cql, its Kotlin/JS build), loaded on first need:
 * importing it takes ~0.7 s and ~22 MB of heap (~48 MB resident), which a process whose ELM comes
 * from the cache (a service start, a batch run, most CLI commands) never needs.
 */
export type CqlToElm = typeof import('@cqframework/cql/cql-to-elm');

/** The translator and the Kotlin runtime classes its unit services are built from. */
export interface Translator {
  readonly cqlToElm: CqlToElm;
  readonly BigDecimal: typeof import('@cqframework/cql/shared').BigDecimal;
  readonly Pair: typeof import('@cqframework/cql/kotlin-kotlin-stdlib').Pair;
}

let loading: Promise<Translator> | undefined;

/** loadTranslator imports the translator once per process. */
export function loadTranslator(): Promise<Translator> {
  loading ??= Promise.all([import('@cqframework/cql/cql-to-elm'), import('@cqframework/cql/shared'), import('@cqframework/cql/kotlin-kotlin-stdlib')]).then(
    ([cqlToElm, shared, stdlib]) => ({ cqlToElm, BigDecimal: shared.BigDecimal, Pair: stdlib.Pair }),
  );
  return loading;
}

/** translatorRequested says whether this process has asked for the translator (tests: a warm cache never does). */
export function translatorRequested(): boolean {
  return loading !== undefined;
}
