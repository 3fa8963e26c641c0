import type { Command } from 'commander';
import { registerActivationCommands } from './activation.ts';
import { registerBatchCommand } from './batch.ts';
import { registerGenerateCommand } from './generate.ts';
import { registerIngestCommand } from './ingest.ts';
import { registerKnowledgeCommands } from './knowledge-commands.ts';
import { registerMeasureCommand } from './measure.ts';
import { registerPreviewCommand } from './preview.ts';
import { registerServeCommand } from './serve.ts';
import { registerTestCommand } from './test-command.ts';

/** registerCommands adds every subcommand; each lives in its own module under src/cli/. */
export function registerCommands(program: Command): void {
  registerKnowledgeCommands(program);
  registerIngestCommand(program);
  registerGenerateCommand(program);
  registerBatchCommand(program);
  registerServeCommand(program);
  registerTestCommand(program);
  registerMeasureCommand(program);
  registerPreviewCommand(program);
  registerActivationCommands(program);
}
