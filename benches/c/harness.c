/* The C side of the comparison: the floor, distlog's C API (DISTLOG_EVENT,
 * DISTLOG_EVENT_KV, distlog_log and the printf macro DISTLOG_INFO) and LTTng-UST, the same
 * event (a message, two integers, one short string) in the same timing
 * loop. Built by scripts/bench in up
 * to three variants: -DWITH_DISTLOG (linked with libdistlog_ffi),
 * -DWITH_LTTNG (with the tracepoint provider tp.c) and both (for `serve`).
 *
 *   harness floor | distlog | lttng | serve
 *
 * `serve` answers rounds for bench-runner pair (benches/src/bin/pair): each
 * stdin line "OP BATCHES BATCH" (OP: floor, floor64m, event, event_kv, event_rt, log, lttng) runs one
 * round and prints its p50 in ns/op (-1: not built in), so the C rows of a
 * target ratio alternate inside one process. */
#include "bench_common.h"

#ifdef WITH_DISTLOG
#include "distlog.h"
#endif
#ifdef WITH_LTTNG
#include "tp.h"
#endif

/* The operations, shared by the rows and the rounds of `serve`. */
#define OP_FLOOR floor_op(i, 42, 7)
#define OP_FLOOR_BIG floor_big_op(i, 42, 7)
#define OP_EVENT(level)                                                                        \
    do {                                                                                       \
        distlog_field f[3] = {DISTLOG_FIELD_I64("a", (int64_t)i), DISTLOG_FIELD_U64("b", 42),  \
                              DISTLOG_FIELD_STR("s", "short")};                                \
        DISTLOG_EVENT(level, "bench::c", "message text", f, 3);                                \
    } while (0)
/* The same event with a field count known only at run time: the library
 * takes the field array (distlog_event_callsite_log_tl; a constant count
 * is converted to distlog_kv by the header). Not a target row: `serve`
 * only (op event_rt). */
#ifdef WITH_DISTLOG
static volatile size_t rt_nfields = 3;
#endif
#define OP_EVENT_RT                                                                            \
    do {                                                                                       \
        distlog_field f[3] = {DISTLOG_FIELD_I64("a", (int64_t)i), DISTLOG_FIELD_U64("b", 42),  \
                              DISTLOG_FIELD_STR("s", "short")};                                \
        DISTLOG_EVENT(DISTLOG_LEVEL_INFO, "bench::c", "message text", f, rt_nfields);          \
    } while (0)
/* The same static call site with the typed API (DISTLOG_EVENT_KV: types
 * and string lengths from the compiler, no field array). */
#define OP_EVENT_KV                                                                            \
    DISTLOG_EVENT_KV(DISTLOG_LEVEL_INFO, "bench::c", "message text",                           \
                     DISTLOG_KV("a", (int64_t)i), DISTLOG_KV("b", (uint64_t)42),               \
                     DISTLOG_KV("s", "short"))
#define OP_LOG                                                                                 \
    do {                                                                                       \
        distlog_field f[3] = {DISTLOG_FIELD_I64("a", (int64_t)i), DISTLOG_FIELD_U64("b", 42),  \
                              DISTLOG_FIELD_STR("s", "short")};                                \
        distlog_log(DISTLOG_LEVEL_INFO, "bench::c", "message text", f, 3);                     \
    } while (0)
#define OP_LTTNG lttng_ust_tracepoint(distlog_bench, event, "message text", (int64_t)i, 42, "short")

static inline void sleep_ns(uint64_t ns) {
    struct timespec d = {(time_t)(ns / 1000000000u), (long)(ns % 1000000000u)};
    nanosleep(&d, NULL);
}

static int serve(void) {
    char op[32];
    size_t nb, bs;
    uint64_t seq = 0;
#ifdef WITH_DISTLOG
    if (distlog_init("bench-c") != DISTLOG_OK) {
        fprintf(stderr, "harness: distlog_init failed\n");
        return 2;
    }
    sleep_ns(300000000); /* the connection thread hands the rings over */
#endif
    while (scanf("%31s %zu %zu", op, &nb, &bs) == 3) {
        double r = -1; /* an empty round or an operation not built in */
        if (nb == 0 || bs == 0) {
            r = -1;
        } else if (strcmp(op, "floor") == 0) {
            BENCH_ROUND(r, &seq, nb, bs, OP_FLOOR);
        } else if (strcmp(op, "floor64m") == 0) {
            floor_big_init();
            BENCH_ROUND(r, &seq, nb, bs, OP_FLOOR_BIG);
#ifdef WITH_DISTLOG
        } else if (strcmp(op, "event") == 0 || strcmp(op, "event_kv") == 0 ||
                   strcmp(op, "event_rt") == 0 || strcmp(op, "log") == 0) {
            if (strcmp(op, "event") == 0)
                BENCH_ROUND(r, &seq, nb, bs, OP_EVENT(DISTLOG_LEVEL_INFO));
            else if (strcmp(op, "event_rt") == 0)
                BENCH_ROUND(r, &seq, nb, bs, OP_EVENT_RT);
            else if (strcmp(op, "event_kv") == 0)
                BENCH_ROUND(r, &seq, nb, bs, OP_EVENT_KV);
            else
                BENCH_ROUND(r, &seq, nb, bs, OP_LOG);
            /* Untimed: the sidecar reads the round before the other side's
             * round, which it would otherwise compete with (the C API has no
             * flush): 700 ns a record, above the --stdout sidecar's ~650 ns
             * (sidecar.drain.stdout-json), which also reads during the round. */
            sleep_ns((uint64_t)nb * bs * 700);
#endif
#ifdef WITH_LTTNG
        } else if (strcmp(op, "lttng") == 0) {
            BENCH_ROUND(r, &seq, nb, bs, OP_LTTNG);
#endif
        }
        printf("%.4f\n", r);
        fflush(stdout);
    }
#ifdef WITH_DISTLOG
    distlog_shutdown();
#endif
    return 0;
}

int main(int argc, char **argv) {
    const char *what = argc > 1 ? argv[1] : "";
    bench_calibrate();
    if (strcmp(what, "floor") == 0) {
        BENCH_RUN("floor", "c-floor", "", OP_FLOOR);
        floor_big_init();
        BENCH_RUN("floor", "c-floor-64m", "", OP_FLOOR_BIG);
        return 0;
    }
    if (strcmp(what, "serve") == 0)
        return serve();
#ifdef WITH_DISTLOG
    if (strcmp(what, "distlog") == 0) {
        if (distlog_init("bench-c") != DISTLOG_OK) {
            fprintf(stderr, "harness: distlog_init failed\n");
            return 2;
        }
        bench_batches_max = 5000; /* 550k records of ~80 bytes per row */
        /* Let the connection thread hand the rings to the sidecar. */
        sleep_ns(300000000);
        BENCH_RUN("c.enabled", "distlog-DISTLOG_EVENT", "", OP_EVENT(DISTLOG_LEVEL_INFO));
        sleep_ns(600000000); /* the sidecar catches up between rows */
        BENCH_RUN("c.enabled", "distlog-DISTLOG_EVENT_KV", "", OP_EVENT_KV);
        sleep_ns(600000000);
        BENCH_RUN("c.enabled", "distlog_log", "", OP_LOG);
        sleep_ns(600000000);
        /* The same event through the printf macro: its text formatted into
         * the message (snprintf is most of the cost). */
        BENCH_RUN("c.enabled", "distlog-DISTLOG_INFO", "",
                  DISTLOG_INFO("bench::c", "message text a=%lld b=%d s=%s", (long long)i, 42, "short"));
        BENCH_RUN("c.disabled.level", "distlog-DISTLOG_EVENT", "", OP_EVENT(DISTLOG_LEVEL_DEBUG));
        distlog_shutdown();
        return 0;
    }
#endif
#ifdef WITH_LTTNG
    if (strcmp(what, "lttng") == 0) {
        BENCH_RUN("c.enabled", "lttng-ust", "", OP_LTTNG);
        return 0;
    }
#endif
    fprintf(stderr, "harness: unknown or not built in: %s\n", what);
    return 2;
}
