/* The C side of the comparison: the floor, distlog's C API (DISTLOG_EVENT,
 * distlog_log and the printf macro DISTLOG_INFO) and LTTng-UST, the same
 * event (a message, two integers, one short string) in the same timing
 * loop. Built by scripts/bench in up
 * to two variants: -DWITH_DISTLOG (linked with libdistlog_ffi) and
 * -DWITH_LTTNG (with the tracepoint provider tp.c).
 *
 *   harness floor | distlog | lttng */
#include "bench_common.h"

#ifdef WITH_DISTLOG
#include "distlog.h"
#endif
#ifdef WITH_LTTNG
#include "tp.h"
#endif

int main(int argc, char **argv) {
    const char *what = argc > 1 ? argv[1] : "";
    bench_calibrate();
    if (strcmp(what, "floor") == 0) {
        BENCH_RUN("floor", "c-floor", "", floor_op(i, 42, 7));
        return 0;
    }
#ifdef WITH_DISTLOG
    if (strcmp(what, "distlog") == 0) {
        if (distlog_init("bench-c") != DISTLOG_OK) {
            fprintf(stderr, "harness: distlog_init failed\n");
            return 2;
        }
        bench_batches_max = 5000; /* 550k records of ~80 bytes per row */
        /* Let the connection thread hand the rings to the sidecar. */
        struct timespec d = {0, 300000000};
        nanosleep(&d, NULL);
        /* The static call site as a user writes it with the fastest API
         * (DISTLOG_EVENT_KV: typed arguments, string lengths from the
         * compiler). */
        BENCH_RUN("c.enabled", "distlog-DISTLOG_EVENT", "",
                  DISTLOG_EVENT_KV(DISTLOG_LEVEL_INFO, "bench::c", "message text", DISTLOG_KV("a", (int64_t)i),
                                   DISTLOG_KV("b", (uint64_t)42), DISTLOG_KV("s", "short")));
        nanosleep(&d, NULL); /* the sidecar catches up between rows */
        nanosleep(&d, NULL);
        BENCH_RUN("c.enabled", "distlog_log", "", {
            distlog_field f[3] = {DISTLOG_FIELD_I64("a", (int64_t)i), DISTLOG_FIELD_U64("b", 42),
                                  DISTLOG_FIELD_STR("s", "short")};
            distlog_log(DISTLOG_LEVEL_INFO, "bench::c", "message text", f, 3);
        });
        nanosleep(&d, NULL);
        nanosleep(&d, NULL);
        /* The same event through the printf macro: its text formatted into
         * the message (snprintf is most of the cost). */
        BENCH_RUN("c.enabled", "distlog-DISTLOG_INFO", "",
                  DISTLOG_INFO("bench::c", "message text a=%lld b=%d s=%s", (long long)i, 42, "short"));
        BENCH_RUN("c.disabled.level", "distlog-DISTLOG_EVENT", "", {
            distlog_field f[3] = {DISTLOG_FIELD_I64("a", (int64_t)i), DISTLOG_FIELD_U64("b", 42),
                                  DISTLOG_FIELD_STR("s", "short")};
            DISTLOG_EVENT(DISTLOG_LEVEL_DEBUG, "bench::c", "message text", f, 3);
        });
        distlog_shutdown();
        return 0;
    }
#endif
#ifdef WITH_LTTNG
    if (strcmp(what, "lttng") == 0) {
        BENCH_RUN("c.enabled", "lttng-ust", "",
                  lttng_ust_tracepoint(distlog_bench, event, "message text", (int64_t)i, 42, "short"));
        return 0;
    }
#endif
    fprintf(stderr, "harness: unknown or not built in: %s\n", what);
    return 2;
}
