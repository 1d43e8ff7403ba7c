// {{name}}: a Weft event handler in C.
//
// Receives the events of `{{name}}-in` (config key `topic`), and for each emits one event to
// `{{name}}-out` (config key `output-topic`) with the same data, keyed like the input. An event
// without data is a permanent error: Weft dead-letters it at once.
//
// The bindings (handler.h, handler.c, handler_component_type.o) are generated from wit/ by
// `wit-bindgen c` in build.sh. Ownership, as they define it:
// - the arguments of an export (`event`, `delivery`) belong to the handler: free them before
//   returning, or a reused instance leaks them on every call;
// - what an export returns (`ret`, `err`) is freed by the bindings after the call: give it
//   heap-allocated strings (handler_string_dup), never literals;
// - the arguments of an import (`weft_handler_host_emit`) stay the caller's: literals and borrowed
//   strings are fine (handler_string_set); what an import returns (`config_get`) is the caller's to
//   free.

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "handler.h"

/// A NUL-terminated copy of `s`; free it.
static char *text(const handler_string_t *s) {
    char *copy = malloc(s->len + 1);
    memcpy(copy, s->ptr, s->len);
    copy[s->len] = 0;
    return copy;
}

/// `[plugin.<id>] config` value of `key`, owned by the caller, or false.
static bool config(const char *key, handler_string_t *value) {
    handler_string_t name;
    handler_string_set(&name, key);
    return weft_handler_host_config_get(&name, value);
}

void exports_handler_describe(handler_plugin_info_t *ret) {
    handler_string_dup(&ret->name, "{{name}}");
    handler_string_dup(&ret->version, "0.1.0");
    handler_string_dup(&ret->description, "Emits one event per input event");
    weft_handler_types_subscription_t *subscription = calloc(1, sizeof *subscription);
    if (!config("topic", &subscription->topic)) {
        handler_string_dup(&subscription->topic, "{{name}}-in");
    }
    ret->subscriptions.ptr = subscription;
    ret->subscriptions.len = 1;
}

bool exports_handler_handle(handler_cloudevent_t *event, handler_delivery_t *delivery, handler_handle_error_t *err) {
    char *id = text(&event->id);
    char message[512];
    bool handled = true;
    if (!event->data.is_some) {
        snprintf(message, sizeof message, "event %s has no data", id);
        err->tag = WEFT_HANDLER_TYPES_HANDLE_ERROR_PERMANENT;
        handler_string_dup(&err->val.permanent, message);
        handled = false;
    } else {
        // `<input id>-{{name}}`: a retried or redelivered input emits the same id.
        char out_id[512], out_type[512];
        char *type = text(&event->type);
        snprintf(out_id, sizeof out_id, "%s-{{name}}", id);
        snprintf(out_type, sizeof out_type, "%s.handled", type);
        free(type);
        weft_handler_host_cloudevent_t out = {0};
        handler_string_set(&out.id, out_id);
        handler_string_set(&out.source, "weft/{{name}}");
        handler_string_set(&out.type, out_type);
        handler_string_set(&out.specversion, "1.0");
        out.datacontenttype = event->datacontenttype;
        out.subject = event->subject;
        out.time = event->time;
        out.data = event->data;

        handler_string_t topic;
        bool configured = config("output-topic", &topic);
        if (!configured) {
            handler_string_set(&topic, "{{name}}-out");
        }
        weft_handler_host_emit_error_t emit_error;
        handler_list_u8_t *key = delivery->key.is_some ? &delivery->key.val : NULL;
        if (weft_handler_host_emit(&topic, &out, key, &emit_error)) {
            snprintf(message, sizeof message, "handled %s", id);
            handler_string_t line;
            handler_string_set(&line, message);
            weft_handler_host_log(WEFT_HANDLER_TYPES_LOG_LEVEL_INFO, &line);
        } else {
            // `unavailable` passes; `invalid-event` and `forbidden` do not.
            bool passes = emit_error.tag == WEFT_HANDLER_TYPES_EMIT_ERROR_UNAVAILABLE;
            weft_handler_host_emit_error_free(&emit_error);
            snprintf(message, sizeof message, "event %s: emit failed", id);
            if (passes) {
                err->tag = WEFT_HANDLER_TYPES_HANDLE_ERROR_RETRYABLE;
                handler_string_dup(&err->val.retryable.reason, message);
                err->val.retryable.delay_ms.is_some = false;
            } else {
                err->tag = WEFT_HANDLER_TYPES_HANDLE_ERROR_PERMANENT;
                handler_string_dup(&err->val.permanent, message);
            }
            handled = false;
        }
        if (configured) {
            handler_string_free(&topic);
        }
    }
    free(id);
    handler_cloudevent_free(event);
    handler_delivery_free(delivery);
    return handled;
}
