// {{name}}: a Weft event handler.
//
// Receives the events of `{{name}}-in` (config key `topic`), and for each emits one event to
// `{{name}}-out` (config key `output-topic`) with the same JSON data, keyed like the input. Data
// that is not JSON is a permanent error: Weft dead-letters the event at once.
//
// WIT names become camelCase, `option` is `undefined`, `list<u8>` a Uint8Array, `s64` a BigInt.
// Return an error by throwing `{ tag: 'retryable' | 'permanent', val }`; a failed `emit` throws
// with the emit-error in `payload`.
import { configGet, emit, log } from 'weft:handler/host@0.1.0';

export function describe() {
  return {
    name: '{{name}}',
    version: '0.1.0',
    description: 'Emits one event per input event',
    subscriptions: [{ topic: configGet('topic') ?? '{{name}}-in', types: [], sources: [] }],
  };
}

export function handle(event, delivery) {
  let data;
  try {
    data = JSON.parse(new TextDecoder().decode(event.data ?? new Uint8Array()));
  } catch (e) {
    throw { tag: 'permanent', val: `event ${event.id}: data is not JSON (${e})` };
  }
  const output = {
    // `<input id>-{{name}}`: a retried or redelivered input emits the same id.
    id: `${event.id}-{{name}}`,
    source: 'weft/{{name}}',
    type: `${event.type}.handled`,
    specversion: '1.0',
    datacontenttype: 'application/json',
    dataschema: undefined,
    subject: event.subject,
    time: event.time,
    extensions: [],
    data: new TextEncoder().encode(JSON.stringify(data)),
  };
  try {
    emit(configGet('output-topic') ?? '{{name}}-out', output, delivery.key);
  } catch (e) {
    const error = e.payload ?? {};
    // `unavailable` passes; `invalid-event` and `forbidden` do not.
    const tag = error.tag === 'unavailable' ? 'retryable' : 'permanent';
    const reason = `emit: ${JSON.stringify(error)}`;
    throw tag === 'retryable' ? { tag, val: { reason, delayMs: undefined } } : { tag, val: reason };
  }
  log('info', `handled ${event.id} from ${delivery.topic}/${delivery.partition}@${delivery.offset}`);
}
