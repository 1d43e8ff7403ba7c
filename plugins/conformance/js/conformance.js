// The conformance handler in JavaScript (see plugins/conformance/README.md).
import { configGet, emit, log } from 'weft:handler/host@0.1.0';

export function describe() {
  return {
    name: 'conformance-js',
    version: '1.0.0',
    description: "Weft's plugin conformance cases",
    subscriptions: [{ topic: configGet('topic') ?? 'conformance-in', types: [], sources: [] }],
  };
}

export function handle(event, delivery) {
  const mode = event.extensions.find(([name]) => name === 'conformance')?.[1] ?? 'ok';
  if (mode === 'retry') {
    throw { tag: 'retryable', val: { reason: `${event.id} asked for a retry`, delayMs: 1234n } };
  }
  if (mode === 'permanent') {
    throw { tag: 'permanent', val: `${event.id} is permanent` };
  }
  if (mode === 'trap') {
    // An uncaught error that is not a handle-error: the component traps.
    throw new Error(`${event.id} asked for a trap`);
  }
  const out = {
    id: `${event.id}-out`,
    source: 'weft/conformance',
    type: 'weft.conformance.echoed',
    specversion: '1.0',
    datacontenttype: event.datacontenttype,
    dataschema: undefined,
    subject: event.type,
    time: undefined,
    extensions: [['lang', 'js'], ['attempt', String(delivery.attempt)]],
    data: event.data,
  };
  try {
    emit(configGet('output-topic') ?? `${delivery.topic}.out`, out, delivery.key);
  } catch (e) {
    throw { tag: 'retryable', val: { reason: `emit: ${JSON.stringify(e.payload)}`, delayMs: undefined } };
  }
  log('info', `handled ${event.id}`);
}
