// The conformance handler in C (see plugins/conformance/README.md), over the bindings that
// `wit-bindgen c` generates from wit/ (handler.h, handler.c, handler_component_type.o).
//
// Ownership, as wit-bindgen's C bindings define it:
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

static bool equals(const handler_string_t *s, const char *literal) {
    return s->len == strlen(literal) && memcmp(s->ptr, literal, s->len) == 0;
}

/// `[plugin.<id>] config` value of `key`, owned by the caller, or false.
static bool config(const char *key, handler_string_t *value) {
    handler_string_t name;
    handler_string_set(&name, key);
    return weft_handler_host_config_get(&name, value);
}

static void info(const char *message) {
    handler_string_t line;
    handler_string_set(&line, message);
    weft_handler_host_log(WEFT_HANDLER_TYPES_LOG_LEVEL_INFO, &line);
}

void exports_handler_describe(handler_plugin_info_t *ret) {
    handler_string_dup(&ret->name, "conformance-c");
    handler_string_dup(&ret->version, "1.0.0");
    handler_string_dup(&ret->description, "Weft's plugin conformance cases");
    weft_handler_types_subscription_t *subscription = calloc(1, sizeof *subscription);
    if (!config("topic", &subscription->topic)) {
        handler_string_dup(&subscription->topic, "conformance-in");
    }
    ret->subscriptions.ptr = subscription;
    ret->subscriptions.len = 1;
}

bool exports_handler_handle(handler_cloudevent_t *event, handler_delivery_t *delivery, handler_handle_error_t *err) {
    char *id = text(&event->id);
    const handler_string_t *mode = NULL;
    for (size_t i = 0; i < event->extensions.len; i++) {
        if (equals(&event->extensions.ptr[i].f0, "conformance")) {
            mode = &event->extensions.ptr[i].f1;
        }
    }
    char message[512];
    bool handled = true;
    if (mode && equals(mode, "retry")) {
        snprintf(message, sizeof message, "%s asked for a retry", id);
        err->tag = WEFT_HANDLER_TYPES_HANDLE_ERROR_RETRYABLE;
        handler_string_dup(&err->val.retryable.reason, message);
        err->val.retryable.delay_ms.is_some = true;
        err->val.retryable.delay_ms.val = 1234;
        handled = false;
    } else if (mode && equals(mode, "permanent")) {
        snprintf(message, sizeof message, "%s is permanent", id);
        err->tag = WEFT_HANDLER_TYPES_HANDLE_ERROR_PERMANENT;
        handler_string_dup(&err->val.permanent, message);
        handled = false;
    } else if (mode && equals(mode, "trap")) {
        fprintf(stderr, "%s asked for a trap\n", id);
        abort();
    } else {
        char out_id[512], attempt[16];
        snprintf(out_id, sizeof out_id, "%s-out", id);
        snprintf(attempt, sizeof attempt, "%u", delivery->attempt);
        handler_tuple2_string_string_t extensions[2];
        handler_string_set(&extensions[0].f0, "lang");
        handler_string_set(&extensions[0].f1, "c");
        handler_string_set(&extensions[1].f0, "attempt");
        handler_string_set(&extensions[1].f1, attempt);
        weft_handler_host_cloudevent_t out = {0};
        handler_string_set(&out.id, out_id);
        handler_string_set(&out.source, "weft/conformance");
        handler_string_set(&out.type, "weft.conformance.echoed");
        handler_string_set(&out.specversion, "1.0");
        out.datacontenttype = event->datacontenttype;
        out.subject.is_some = true;
        out.subject.val = event->type;
        out.extensions.ptr = extensions;
        out.extensions.len = 2;
        out.data = event->data;

        handler_string_t topic;
        bool configured = config("output-topic", &topic);
        char default_topic[512];
        if (!configured) {
            char *input = text(&delivery->topic);
            snprintf(default_topic, sizeof default_topic, "%s.out", input);
            free(input);
            handler_string_set(&topic, default_topic);
        }
        weft_handler_host_emit_error_t emit_error;
        handler_list_u8_t *key = delivery->key.is_some ? &delivery->key.val : NULL;
        if (weft_handler_host_emit(&topic, &out, key, &emit_error)) {
            snprintf(message, sizeof message, "handled %s", id);
            info(message);
        } else {
            weft_handler_host_emit_error_free(&emit_error);
            snprintf(message, sizeof message, "%s: emit failed", id);
            err->tag = WEFT_HANDLER_TYPES_HANDLE_ERROR_RETRYABLE;
            handler_string_dup(&err->val.retryable.reason, message);
            err->val.retryable.delay_ms.is_some = false;
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
