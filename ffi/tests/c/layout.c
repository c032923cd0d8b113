/* Prints the C layout of the header's structs for the test to compare with
 * the Rust definitions. */
#include <distlog.h>

#include <stddef.h>
#include <stdio.h>

int main(void) {
    printf("field %zu %zu %zu %zu %zu\n", sizeof(distlog_field), _Alignof(distlog_field),
           offsetof(distlog_field, key), offsetof(distlog_field, type), offsetof(distlog_field, value));
    printf("value %zu %zu\n", sizeof(distlog_value), _Alignof(distlog_value));
    printf("callsite %zu %zu %zu %zu %zu %zu %zu %zu %zu %zu\n", sizeof(distlog_callsite),
           _Alignof(distlog_callsite), offsetof(distlog_callsite, internal_id),
           offsetof(distlog_callsite, internal_interest), offsetof(distlog_callsite, level),
           offsetof(distlog_callsite, flags), offsetof(distlog_callsite, line),
           offsetof(distlog_callsite, target), offsetof(distlog_callsite, message),
           offsetof(distlog_callsite, file));
    printf("event_callsite %zu %zu %zu %zu\n", sizeof(distlog_event_callsite), _Alignof(distlog_event_callsite),
           offsetof(distlog_event_callsite, cs), offsetof(distlog_event_callsite, internal_keys));
    printf("kv %zu %zu %zu %zu %zu %zu\n", sizeof(distlog_kv), _Alignof(distlog_kv), offsetof(distlog_kv, key),
           offsetof(distlog_kv, type), offsetof(distlog_kv, len), offsetof(distlog_kv, value));
    printf("window %zu %zu %zu %zu %zu %zu %zu %zu %zu %zu %zu %zu %zu %zu %zu %zu %zu %zu\n",
           sizeof(distlog_internal_window), _Alignof(distlog_internal_window),
           offsetof(distlog_internal_window, abi), offsetof(distlog_internal_window, ready),
           offsetof(distlog_internal_window, tid), offsetof(distlog_internal_window, busy),
           offsetof(distlog_internal_window, compact),
           offsetof(distlog_internal_window, epoch), offsetof(distlog_internal_window, top),
           offsetof(distlog_internal_window, cursor), offsetof(distlog_internal_window, data),
           offsetof(distlog_internal_window, mask), offsetof(distlog_internal_window, max_window),
           offsetof(distlog_internal_window, write_pos), offsetof(distlog_internal_window, written),
           offsetof(distlog_internal_window, sleeping), offsetof(distlog_internal_window, dropped),
           offsetof(distlog_internal_window, read_pos));
    printf("top %zu %zu %zu %zu %zu\n", sizeof(distlog_internal_top), _Alignof(distlog_internal_top),
           offsetof(distlog_internal_top, scope), offsetof(distlog_internal_top, trace),
           offsetof(distlog_internal_top, has_trace));
    printf("cursor %zu %zu %zu %zu\n", sizeof(distlog_internal_cursor), _Alignof(distlog_internal_cursor),
           offsetof(distlog_internal_cursor, pos), offsetof(distlog_internal_cursor, limit));
    printf("enums %zu %zu %zu %zu\n", sizeof(distlog_result), sizeof(distlog_level), sizeof(distlog_field_type),
           sizeof(distlog_outcome));
    return 0;
}
