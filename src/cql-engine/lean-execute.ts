import { createRequire } from 'node:module';

/**
 * Evaluation without clause-result bookkeeping, for cql-execution 3.3.2.
 *
 * Why: `Expression.execute` (lib/elm/expression.js) runs for every node of every evaluation and,
 * for each node with an ELM localId (nearly all), walks to the root context and records the node's
 * result there (`setLocalIdWithResult`), for clause-coverage reports such as fqm-execution's
 * highlighting. Cairn reads define results only, never those records, so this was a tenth of
 * evaluation spent on bookkeeping.
 *
 * How: `execute` keeps its other duty exactly: an error from a node is wrapped once in
 * cql-execution's AnnotatedError naming the node's type, library, localId and locator. Results and
 * errors are unchanged; `Results.localIdPatientResultsMap` stays empty. A process that also needs
 * clause results from cql-execution (fqm-execution's coverage) must not install this.
 */

interface ExpressionNode {
  readonly localId?: string;
  readonly locator?: string;
  exec(ctx: unknown): Promise<unknown>;
  getRecursiveLibraryIdentifier(ctx: unknown): string;
}

type AnnotatedErrorClass = new (error: unknown, expressionName: string, libraryName: string, localId?: string, locator?: string) => Error;

const require = createRequire(import.meta.url);
// Load the package first: its elm modules import each other in an order only the index resolves.
require('cql-execution');
const { Expression } = require('cql-execution/lib/elm/expression.js') as { Expression: { prototype: { execute(this: ExpressionNode, ctx: unknown): Promise<unknown> } } };
const { AnnotatedError } = require('cql-execution/lib/util/customErrors.js') as { AnnotatedError: AnnotatedErrorClass };

/** cql-execution's own `Expression.prototype.execute`. */
export const originalExecute = Expression.prototype.execute;

async function execute(this: ExpressionNode, ctx: unknown): Promise<unknown> {
  try {
    return await this.exec(ctx);
  } catch (error) {
    if (error instanceof AnnotatedError) throw error;
    throw new AnnotatedError(error, this.constructor.name, this.getRecursiveLibraryIdentifier(ctx), this.localId, this.locator);
  }
}

let installed = false;

/** installLeanExecute drops cql-execution's per-node result recording (see above); idempotent. */
export function installLeanExecute(): void {
  if (installed) return;
  Expression.prototype.execute = execute;
  installed = true;
}
