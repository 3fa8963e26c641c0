// Every worker thread starts here, from plain JavaScript: register tsx, then load the TypeScript
// module whose URL the creator passed as `workerData.module` (see src/batch/pool.ts,
// src/synthetic/generate.ts).
import { workerData } from 'node:worker_threads';
import { register } from 'tsx/esm/api';

register();
await import(workerData.module);
