// Real-time task updates for the Todo app, written in JavaScript.
import { configGet, emit, log } from 'weft:handler/host@0.1.0';

const TYPE_PREFIX = 'com.example.task.';

export function describe() {
  return {
    name: 'task-updates',
    version: '0.1.0',
    description: 'Turns Todo task events into compact updates for connected clients',
    subscriptions: [{ topic: 'task-events', types: [`${TYPE_PREFIX}*`], sources: [] }],
  };
}

export function handle(event, delivery) {
  let task;
  try {
    task = JSON.parse(new TextDecoder().decode(event.data ?? new Uint8Array()));
  } catch (e) {
    throw { tag: 'permanent', val: `event ${event.id}: data is not JSON (${e})` };
  }
  // The Todo app's plain-JSON records keep the task in `task_data`.
  const taskId = task?.task_id ?? task?.task_data?.task_id;
  if (typeof taskId !== 'string' || typeof task?.user_id !== 'string') {
    throw { tag: 'permanent', val: `event ${event.id} has no task_id/user_id in its data` };
  }
  const update = {
    change: event.type.slice(TYPE_PREFIX.length),
    task_id: taskId,
    title: task.title ?? task.task_data?.title ?? null,
    at: event.time ?? null,
    source_offset: Number(delivery.offset),
  };
  const topic = configGet('output-topic') ?? 'task-updates';
  try {
    emit(topic, {
      id: `update-${event.id}`,
      source: 'weft/task-updates',
      type: 'com.example.task.update',
      specversion: '1.0',
      datacontenttype: 'application/json',
      dataschema: undefined,
      subject: `/users/${task.user_id}`,
      time: event.time,
      extensions: [],
      data: new TextEncoder().encode(JSON.stringify(update)),
    }, new TextEncoder().encode(task.user_id));
  } catch (e) {
    throw { tag: 'retryable', val: { reason: `could not emit the update: ${JSON.stringify(e.payload ?? String(e))}`, delayMs: undefined } };
  }
  log('debug', `task ${taskId}: ${update.change}`);
}
