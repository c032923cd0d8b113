/* LTTng-UST tracepoint provider of the C harness: the same event as every
 * other peer (message, two integers, a short string). */
#undef LTTNG_UST_TRACEPOINT_PROVIDER
#define LTTNG_UST_TRACEPOINT_PROVIDER distlog_bench

#undef LTTNG_UST_TRACEPOINT_INCLUDE
#define LTTNG_UST_TRACEPOINT_INCLUDE "./tp.h"

#if !defined(DISTLOG_BENCH_TP_H) || defined(LTTNG_UST_TRACEPOINT_HEADER_MULTI_READ)
#define DISTLOG_BENCH_TP_H

#include <lttng/tracepoint.h>

LTTNG_UST_TRACEPOINT_EVENT(
    distlog_bench, event,
    LTTNG_UST_TP_ARGS(const char *, msg, int64_t, a, uint64_t, b, const char *, s),
    LTTNG_UST_TP_FIELDS(
        lttng_ust_field_string(msg, msg)
        lttng_ust_field_integer(int64_t, a, a)
        lttng_ust_field_integer(uint64_t, b, b)
        lttng_ust_field_string(s, s)))

#endif

#include <lttng/tracepoint-event.h>
