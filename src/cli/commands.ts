import type { Command } from 'commander';

/** registerCommands adds every subcommand; each lives in its own module under src/cli/. */
export function registerCommands(program: Command): void {
  void program;
}
