import { createRequire } from 'node:module';

/**
 * Short-circuit `and` / `or` for cql-execution 3.3.2, with the same results.
 *
 * Why: cql-execution's And and Or (lib/elm/logical.js) evaluate every operand before combining
 * them, so `AgeInYearsAt(...) in Interval[52, 74] and exists "Qualifying Encounters"` runs the
 * encounter query for a child too. A measure's initial population is such a conjunction, and
 * most patients fail its first, cheap operand.
 *
 * How: operands run in order and evaluation stops at the first `false` (and) or `true` (or), whose
 * answer no later operand can change under CQL's three-valued logic; otherwise the values go to
 * cql-execution's own ThreeValuedLogic as before. CQL does not define an evaluation order for
 * these operators; what changes is only that an operand that would have thrown no longer runs when
 * the answer is already known.
 */

interface Operand {
  execute(ctx: unknown): Promise<unknown>;
}

interface LogicalNode {
  readonly args?: readonly Operand[];
  readonly arg?: Operand;
  execArgs(ctx: unknown): Promise<unknown>;
}

interface LogicalClass {
  prototype: { exec(this: LogicalNode, ctx: unknown): Promise<unknown> };
}

interface ThreeValuedLogic {
  and(...values: unknown[]): unknown;
  or(...values: unknown[]): unknown;
}

const require = createRequire(import.meta.url);
const logical = require('cql-execution/lib/elm/logical.js') as { And: LogicalClass; Or: LogicalClass };
const { ThreeValuedLogic: logic } = require('cql-execution/lib/datatypes/datatypes.js') as { ThreeValuedLogic: ThreeValuedLogic };

/** cql-execution's own implementations, kept for nodes that are not a plain operand list. */
export const originalAnd = logical.And.prototype.exec;
export const originalOr = logical.Or.prototype.exec;

function shortCircuit(decisive: boolean, combine: (...values: unknown[]) => unknown, original: LogicalClass['prototype']['exec']) {
  return async function exec(this: LogicalNode, ctx: unknown): Promise<unknown> {
    const operands = this.args;
    if (operands === undefined) return original.call(this, ctx);
    const values: unknown[] = [];
    for (const operand of operands) {
      const value = await operand.execute(ctx);
      if (value === decisive) return decisive;
      values.push(value);
    }
    return combine(...values);
  };
}

let installed = false;

/** installShortCircuitLogic makes cql-execution's And and Or stop at the first decisive operand; idempotent. */
export function installShortCircuitLogic(): void {
  if (installed) return;
  logical.And.prototype.exec = shortCircuit(false, (...values) => logic.and(...values), originalAnd);
  logical.Or.prototype.exec = shortCircuit(true, (...values) => logic.or(...values), originalOr);
  installed = true;
}
