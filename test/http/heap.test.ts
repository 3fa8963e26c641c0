import { describe, expect, it } from 'vitest';
import { servingFlagsMissing } from '../../src/http/heap.ts';

describe('servingFlagsMissing', () => {
  it.each<{ name: string; execArgv: string[]; nodeOptions?: string; missing: string[] }>([
    { name: 'nothing given', execArgv: [], missing: ['--v8-pool-size=1'] },
    { name: 'on the command line', execArgv: ['--v8-pool-size=1'], missing: [] },
    { name: 'in NODE_OPTIONS among others', execArgv: ['--import', 'tsx'], nodeOptions: '--max-old-space-size=4096  --v8-pool-size=1', missing: [] },
    { name: 'another value chosen on purpose', execArgv: ['--v8-pool-size=4'], missing: [] },
    { name: 'a flag that only starts alike', execArgv: ['--v8-pool-size-x=1'], missing: ['--v8-pool-size=1'] },
  ])('$name', ({ execArgv, nodeOptions, missing }) => {
    expect(servingFlagsMissing(execArgv, nodeOptions)).toEqual(missing);
  });
});
