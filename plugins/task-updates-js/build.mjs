// Builds task-updates.wasm: the JavaScript module compiled into a component of the weft:handler
// world (SpiderMonkey embedded). `npm install && npm run build`, or `node build.mjs OUT.wasm`
// (scripts/polyglot-plugins.sh builds every plugin written in another language).
import { componentize } from '@bytecodealliance/componentize-js';
import { writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { dirname, join, relative } from 'node:path';

const here = dirname(fileURLToPath(import.meta.url));
const out = process.argv[2] ?? join(here, 'task-updates.wasm');
const { component } = await componentize({
  sourcePath: join(here, 'task-updates.js'),
  witPath: join(here, '../../wit'),
  worldName: 'handler',
  // Weft gives plugins no HTTP: leave out the fetch/wasi:http imports.
  disableFeatures: ['http', 'fetch-event'],
});
await writeFile(out, component);
console.log(`wrote ${relative(process.cwd(), out)} (${component.length} bytes)`);
