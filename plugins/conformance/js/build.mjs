// Builds the conformance handler: `node build.mjs OUT.wasm`.
import { componentize } from '@bytecodealliance/componentize-js';
import { writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';

const here = dirname(fileURLToPath(import.meta.url));
const out = process.argv[2] ?? join(here, 'conformance-js.wasm');
const { component } = await componentize({
  sourcePath: join(here, 'conformance.js'),
  witPath: join(here, '../../../wit'),
  worldName: 'handler',
  disableFeatures: ['http', 'fetch-event'],
});
await writeFile(out, component);
