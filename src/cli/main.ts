import { Command, CommanderError } from 'commander';
import { CairnError, formatProblem } from '../domain/errors.ts';
import { registerCommands } from './commands.ts';

/** main runs the cairn CLI and resolves to the process exit code; it never calls process.exit. */
export async function main(argv: readonly string[]): Promise<number> {
  const program = new Command()
    .name('cairn')
    .description('Clinical decision support and population-health rules engine (CQL + JSON rules over FHIR R4).')
    .exitOverride()
    .showHelpAfterError();
  registerCommands(program);
  try {
    await program.parseAsync([...argv]);
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (error) {
    if (error instanceof CommanderError) return error.exitCode;
    if (error instanceof CairnError) {
      console.error(`error: ${error.message}`);
      for (const problem of error.problems) console.error(`  ${formatProblem(problem)}`);
      return 1;
    }
    throw error;
  }
}
