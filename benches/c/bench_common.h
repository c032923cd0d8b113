/* Timing shared by the C and C++ harnesses: batches of rdtsc-timed loops,
 * p50/p99 over batches, one JSON line per result (the same shape as
 * bench-runner's, see benches/src/lib.rs). */
#ifndef BENCH_COMMON_H
#define BENCH_COMMON_H
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <x86intrin.h>

static double bench_tpn; /* TSC ticks per ns */

static void bench_calibrate(void) {
    struct timespec a, b, d = {0, 100000000};
    clock_gettime(CLOCK_MONOTONIC, &a);
    uint64_t t0 = __rdtsc();
    nanosleep(&d, NULL);
    uint64_t t1 = __rdtsc();
    clock_gettime(CLOCK_MONOTONIC, &b);
    double ns = (b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec);
    bench_tpn = (double)(t1 - t0) / ns;
}

static int bench_cmp(const void *x, const void *y) {
    double a = *(const double *)x, b = *(const double *)y;
    return a < b ? -1 : a > b;
}

static int bench_quick(void) {
    const char *q = getenv("BENCH_QUICK");
    return q && *q && strcmp(q, "0") != 0;
}

/* Batches of a full run; the distlog rows use fewer (bench_batches_max) so
 * their records fit the 64 MiB ring even while the sidecar gets no core:
 * they measure the write path, never the drop path. */
static size_t bench_batches_max = 20000;

static void bench_shape(size_t *batches, size_t *batch) {
    if (bench_quick()) {
        *batches = 50;
        *batch = 32;
    } else {
        *batches = 20000 < bench_batches_max ? 20000 : bench_batches_max;
        *batch = 100;
    }
}

/* Median of v[0..n) (sorted in place). */
static double bench_median(double *v, size_t n) {
    qsort(v, n, sizeof *v, bench_cmp);
    return v[(n - 1) / 2];
}

/* Batches in one stretch of the fast-mode estimate (lib.rs: CHUNK). */
#define BENCH_CHUNK 200

/* Fast-mode estimate of v in time order: p10 of the medians of its
 * consecutive BENCH_CHUNK-batch stretches (see Stats::fast in lib.rs). */
static double bench_fast(const double *v, size_t n) {
    size_t nc = (n + BENCH_CHUNK - 1) / BENCH_CHUNK;
    double *c = (double *)malloc(nc * sizeof(double));
    double *tmp = (double *)malloc(BENCH_CHUNK * sizeof(double));
    for (size_t k = 0; k < nc; k++) {
        size_t len = n - k * BENCH_CHUNK < BENCH_CHUNK ? n - k * BENCH_CHUNK : BENCH_CHUNK;
        memcpy(tmp, v + k * BENCH_CHUNK, len * sizeof(double));
        c[k] = bench_median(tmp, len);
    }
    qsort(c, nc, sizeof *c, bench_cmp);
    double f = c[(size_t)((double)(nc - 1) * 0.1 + 0.5)];
    free(tmp);
    free(c);
    return f;
}

static void bench_emit(const char *workload, const char *impl, double *v, size_t n, const char *extra) {
    double fast = bench_fast(v, n);
    qsort(v, n, sizeof *v, bench_cmp);
    double sum = 0;
    for (size_t i = 0; i < n; i++) sum += v[i];
#define AT(q) v[(size_t)((double)(n - 1) * (q) + 0.5)]
    printf("{\"workload\":\"%s\",\"impl\":\"%s\",\"unit\":\"ns/op\",\"p50\":%.4f,\"p99\":%.4f,"
           "\"p999\":%.4f,\"mean\":%.4f,\"min\":%.4f,\"fast\":%.4f,\"n\":%zu,\"extra\":{%s}}\n",
           workload, impl, AT(0.5), AT(0.99), AT(0.999), sum / n, v[0], fast, n, extra ? extra : "");
#undef AT
    fflush(stdout);
}

/* BENCH_TIMED(v, nb, bs, statement using uint64_t i): nb timed batches of
 * bs statements, per-operation ns of each into v[0..nb). */
#define BENCH_TIMED(v, nb, bs, ...)                                             \
    for (size_t b_ = 0; b_ < (nb); b_++) {                                      \
        uint64_t t0_ = __rdtsc();                                               \
        for (size_t k_ = 0; k_ < (bs); k_++, i++) { __VA_ARGS__; }              \
        uint64_t t1_ = __rdtsc();                                               \
        (v)[b_] = (double)(t1_ - t0_) / bench_tpn / (double)(bs);               \
    }

/* BENCH_RUN(workload, impl, extra, statement using uint64_t i): variadic so
 * the statement may contain commas. */
#define BENCH_RUN(workload, impl, extra, ...)                                   \
    do {                                                                        \
        size_t nb_, bs_;                                                        \
        bench_shape(&nb_, &bs_);                                                \
        double *v_ = (double *)malloc(nb_ * sizeof(double));                    \
        uint64_t i = 0;                                                         \
        BENCH_TIMED(v_, nb_ / 10 + 1, bs_, __VA_ARGS__)                         \
        BENCH_TIMED(v_, nb_, bs_, __VA_ARGS__)                                  \
        bench_emit(workload, impl, v_, nb_, extra);                             \
        free(v_);                                                               \
    } while (0)

/* One round of a paired measurement (bench-runner pair): nb batches of bs
 * statements; out = their p50 in ns/op. The counter i runs on in *seq. */
#define BENCH_ROUND(out, seq, nb, bs, ...)                                      \
    do {                                                                        \
        double *v_ = (double *)malloc((nb) * sizeof(double));                   \
        uint64_t i = *(seq);                                                    \
        BENCH_TIMED(v_, nb, bs, __VA_ARGS__)                                    \
        *(seq) = i;                                                             \
        (out) = bench_median(v_, nb);                                           \
        free(v_);                                                               \
    } while (0)

/* The floor: a TSC timestamp and 32 bytes into a thread-local buffer,
 * published with a release store. */
#define FLOOR_BYTES (64u << 10)
struct floor_buf_t {
    uint64_t pos;
    unsigned char data[FLOOR_BYTES] __attribute__((aligned(64)));
};
static __thread struct floor_buf_t floor_buf;

static inline __attribute__((always_inline)) void floor_op(uint64_t a, uint64_t b, uint64_t c) {
    uint64_t rec[4] = {__rdtsc(), a, b, c};
    uint64_t p = __atomic_load_n(&floor_buf.pos, __ATOMIC_RELAXED);
    memcpy(floor_buf.data + (p & (FLOOR_BYTES - 1)), rec, 32);
    __atomic_store_n(&floor_buf.pos, p + 32, __ATOMIC_RELEASE);
}

/* The same floor over a buffer as large as the enabled rows' rings
 * (64 MiB, DISTLOG_RING_BYTES in scripts/bench): a buffer that size does
 * not stay in the caches, so this shows what the ring's footprint alone
 * costs a writer. Faulted in before use, as the client's rings are
 * (MADV_POPULATE_WRITE). */
#define FLOOR_BIG_BYTES (64u << 20)
static unsigned char *floor_big;
static uint64_t floor_big_pos;

static inline void floor_big_init(void) {
    if (floor_big)
        return;
    floor_big = (unsigned char *)aligned_alloc(64, FLOOR_BIG_BYTES);
    if (!floor_big) {
        fprintf(stderr, "harness: no memory for the 64 MiB floor\n");
        exit(2);
    }
    memset(floor_big, 0, FLOOR_BIG_BYTES);
}

static inline __attribute__((always_inline)) void floor_big_op(uint64_t a, uint64_t b, uint64_t c) {
    uint64_t rec[4] = {__rdtsc(), a, b, c};
    uint64_t p = __atomic_load_n(&floor_big_pos, __ATOMIC_RELAXED);
    memcpy(floor_big + (p & (FLOOR_BIG_BYTES - 1)), rec, 32);
    __atomic_store_n(&floor_big_pos, p + 32, __ATOMIC_RELEASE);
}

#endif
