// Builds {{name}}.wasm: handler.js compiled into a component of the weft:handler world.
import { componentize } from '@bytecodealliance/componentize-js';
import { writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';

const here = dirname(fileURLToPath(import.meta.url));
const { component } = await componentize({
  sourcePath: join(here, 'handler.js'),
  witPath: join(here, 'wit'),
  worldName: 'handler',
  // Weft gives plugins no HTTP: leave out the fetch/wasi:http imports.
  disableFeatures: ['http', 'fetch-event'],
});
await writeFile(join(here, '{{name}}.wasm'), component);
console.log(`wrote {{name}}.wasm (${component.length} bytes)`);
