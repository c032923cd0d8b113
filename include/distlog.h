/*
 * distlog.h: the C API of distlog (libdistlog_ffi), for C and C++.
 *
 * C and C++ processes write records into the same shared-memory rings as
 * Rust processes; the host's sidecar (distlogd) reads them. A record from C
 * is indistinguishable from one written by the Rust client: service, pid,
 * thread, target, file and line (from the macros), typed fields, scopes and
 * W3C traceparent.
 *
 * ---------------------------------------------------------------------------
 * THE CONTRACT (every function follows it; read this first)
 * ---------------------------------------------------------------------------
 *
 * Names. Functions are distlog_<noun>_<verb> (distlog_scope_open,
 *   distlog_scope_close, distlog_result_str). Types are distlog_<noun>;
 *   constants and macros DISTLOG_<NAME>. Names containing "internal" are
 *   private to this header.
 *
 * Results. A call that can fail returns distlog_result; DISTLOG_OK is 0,
 *   every other value is an error, and distlog_result_str() explains any
 *   code in one English sentence (a static string, never NULL). A function
 *   that returns a pointer returns NULL on failure. A function that returns
 *   void ignores bad arguments (the record is dropped) and never fails in a
 *   way the caller must handle: logging never stops the program.
 *
 * Outputs. An output (a buffer) is written only on success; on an error it
 *   is left untouched. Every buffer is followed by its size_t length in
 *   bytes, including room for the terminating NUL.
 *
 * Ownership. distlog_scope_open() returns a handle the caller owns until it
 *   gives it to distlog_scope_close(), which accepts NULL (a no-op), like
 *   free(). Strings and fields passed in are only read during the call and
 *   may be freed right after it returns; the macros' target, message and
 *   format arguments must be string literals (they are kept in a static
 *   call site).
 *
 * Arguments. NULL where a pointer is required, levels outside
 *   DISTLOG_LEVEL_ERROR..DISTLOG_LEVEL_TRACE, field counts above
 *   DISTLOG_MAX_FIELDS, and field arrays that are NULL with a nonzero count
 *   are rejected (an error code, NULL, or a dropped record); fields == NULL
 *   with nfields == 0 is valid. Strings need not be UTF-8: invalid bytes
 *   are carried as U+FFFD. A field with a NULL key or an unknown type is
 *   skipped; a NULL string value is written as "(null)".
 *
 * Threads. Every function may be called from any thread at any time, also
 *   concurrently. Logging never blocks: it takes no lock and makes no
 *   system call in the steady state; when a ring is full the record is
 *   dropped and counted, and the sidecar reports the loss. A level above
 *   every directive costs two loads and a compare in the macros
 *   (distlog_max_level); an enabled call site asks the filter, whose
 *   directives the sidecar may change at any time (distlogd ctl). A
 *   scope is entered on the thread that opened it and must be closed on
 *   that thread, innermost first.
 *
 * Panics. No Rust panic crosses this ABI: an internal error returns
 *   DISTLOG_PANIC (or NULL, 0, nothing) and the call has no effect.
 *
 * fork(). A child process never writes into its parent's rings: its first
 *   record builds a new set of rings and a connection of its own (with the
 *   child's pid); call-site ids and open scope handles stay valid. Do not
 *   call distlog_init again in the child.
 *
 * Lifecycle. distlog_init(service) starts the runtime and returns DISTLOG_OK
 *   also when no sidecar is running: records wait in the rings (up to their
 *   size) and a background thread connects, and reconnects after a sidecar
 *   restart. Before distlog_init nothing is recorded. distlog_shutdown()
 *   waits (at most 2 s, and only while connected) until the sidecar has
 *   read what was written, then disables logging. Without it, records a
 *   connected sidecar has not read yet are still collected: the sidecar
 *   holds the rings and drains them after the process exits.
 *
 * Environment (read by distlog_init):
 *   DISTLOG_SOCKET       the sidecar's socket (default
 *                        $XDG_RUNTIME_DIR/distlog/distlogd.sock, else
 *                        /run/distlog/distlogd.sock)
 *   DISTLOG_SERVICE      overrides the service name given to distlog_init
 *   DISTLOG_LOG, RUST_LOG  filter directives, "target=level,..." (default
 *                        "info")
 *   DISTLOG_RING_BYTES   bytes of one thread's ring (default 256k)
 *   DISTLOG_MAX_RINGS    rings before threads share one (default 16)
 *
 * Linking.
 *   shared:  cc app.c -I<prefix>/include -L<prefix>/lib -ldistlog_ffi
 *            (at run time the loader must find libdistlog_ffi.so: rpath
 *            -Wl,-rpath,<prefix>/lib or LD_LIBRARY_PATH)
 *   static:  cc app.c -I<prefix>/include <prefix>/lib/libdistlog_ffi.a \
 *               -lgcc_s -lutil -lrt -lpthread -lm -ldl -lc
 *   pkg-config: cc app.c $(pkg-config --cflags --libs distlog)
 *            or, static, $(pkg-config --static --cflags --libs distlog)
 *   Build: cargo build --release -p distlog-ffi (target/release);
 *   install: ffi/install.sh PREFIX (lib, header, lib/pkgconfig/distlog.pc).
 *
 * Example.
 *   distlog_init("checkout");
 *   distlog_scope *s = distlog_scope_open_with_state("pay", incoming_traceparent,
 *                                                    incoming_tracestate, NULL, 0);
 *   distlog_field f[2] = { DISTLOG_FIELD_I64("order", 42),
 *                          DISTLOG_FIELD_STR("who", name) };
 *   DISTLOG_EVENT(DISTLOG_LEVEL_INFO, "checkout::pay", "paid", f, 2);
 *   DISTLOG_EVENT_KV(DISTLOG_LEVEL_INFO, "checkout::pay", "paid", // C11, fastest
 *                    DISTLOG_KV("order", 42), DISTLOG_KV("who", name));
 *   DISTLOG_WARN("checkout::pay", "retry %d of %d", i, n);
 *   distlog_scope_close(s, DISTLOG_OUTCOME_OK);
 *   distlog_shutdown();
 *
 * This header and the library's exports are compared by a test
 * (ffi/tests/header.rs): every prototype, its parameter count, and every
 * enum value here matches the Rust source.
 */
#ifndef DISTLOG_H
#define DISTLOG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------ */
/* Results                                                                  */
/* ------------------------------------------------------------------------ */

/* What a fallible call says. The numbers never change meaning. */
typedef enum distlog_result {
    DISTLOG_OK = 0,
    DISTLOG_NULL_PARAMETER = 1,   /* a required pointer was NULL */
    DISTLOG_INVALID_ARGUMENT = 2, /* level, count, empty name out of range */
    DISTLOG_BUFFER_TOO_SMALL = 3, /* output buffer too small; not written */
    DISTLOG_NOT_INITIALIZED = 4,  /* distlog_init has not succeeded */
    DISTLOG_BAD_CONFIG = 5,       /* a DISTLOG_* variable cannot be used */
    DISTLOG_IO_ERROR = 6,         /* shared memory or a thread failed */
    DISTLOG_PANIC = 7             /* internal error; the call had no effect */
} distlog_result;

/* A static English sentence explaining r (any number); never NULL. */
const char *distlog_result_str(distlog_result r);

/* ------------------------------------------------------------------------ */
/* Start and stop                                                           */
/* ------------------------------------------------------------------------ */

/* Start distlog as service and connect to $DISTLOG_SOCKET in the
 * background. DISTLOG_OK also without a sidecar; a second call keeps the
 * first settings. Errors: DISTLOG_NULL_PARAMETER, DISTLOG_INVALID_ARGUMENT
 * (empty name), DISTLOG_BAD_CONFIG, DISTLOG_IO_ERROR. */
distlog_result distlog_init(const char *service);

/* Flush what is written (at most 2 s, only while connected), then
 * disable logging. */
void distlog_shutdown(void);

/* ------------------------------------------------------------------------ */
/* Levels and filtering                                                     */
/* ------------------------------------------------------------------------ */

typedef enum distlog_level {
    DISTLOG_LEVEL_ERROR = 1,
    DISTLOG_LEVEL_WARN = 2,
    DISTLOG_LEVEL_INFO = 3,
    DISTLOG_LEVEL_DEBUG = 4,
    DISTLOG_LEVEL_TRACE = 5
} distlog_level;

/* 1 when a record at level for target would be written, else 0 (also for
 * a bad level, a NULL target, or before distlog_init). */
int distlog_enabled(distlog_level level, const char *target);

/* Points to the most verbose level enabled anywhere (a distlog_level
 * number, 0: nothing). It follows the sidecar's directives and per-request
 * boosts while running, and points to a constant 0 before distlog_init and
 * after distlog_shutdown. Written by the library only; the macros read it
 * (two relaxed loads) before anything else. */
extern const uint8_t *distlog_max_level;

/* ------------------------------------------------------------------------ */
/* Fields                                                                   */
/* ------------------------------------------------------------------------ */

/* Most fields one call takes. */
#define DISTLOG_MAX_FIELDS 128

typedef enum distlog_field_type {
    DISTLOG_FIELD_TYPE_I64 = 1,
    DISTLOG_FIELD_TYPE_U64 = 2,
    DISTLOG_FIELD_TYPE_F64 = 3,
    DISTLOG_FIELD_TYPE_BOOL = 4,
    DISTLOG_FIELD_TYPE_STR = 5
} distlog_field_type;

typedef union distlog_value {
    int64_t i64;
    uint64_t u64;
    double f64;
    int boolean;     /* nonzero = true */
    const char *str; /* NUL-terminated, read during the call only */
} distlog_value;

/* One typed key/value pair. A complete type: build arrays on the stack
 * with the DISTLOG_FIELD_* macros:
 *   distlog_field f[2] = { DISTLOG_FIELD_I64("order", 42),
 *                          DISTLOG_FIELD_STR("who", name) }; */
typedef struct distlog_field {
    const char *key; /* NUL-terminated; NULL skips the field */
    distlog_field_type type;
    distlog_value value;
} distlog_field;

/* The field constructors below are always inlined where the compiler
 * allows it: the inline event writer (below) needs their keys, types and
 * literal lengths as constants, and a large function may otherwise keep
 * them as calls until after the writer's tests were decided. Internal. */
#if defined(__GNUC__) || defined(__clang__)
#define DISTLOG_INTERNAL_FIELD_FN static inline __attribute__((always_inline))
#else
#define DISTLOG_INTERNAL_FIELD_FN static inline
#endif

/* Constructors, usable from C and C++ (the C++ macros use them). */
DISTLOG_INTERNAL_FIELD_FN distlog_field distlog_field_make_i64(const char *key, int64_t v) {
    distlog_field f;
    f.key = key;
    f.type = DISTLOG_FIELD_TYPE_I64;
    f.value.i64 = v;
    return f;
}
DISTLOG_INTERNAL_FIELD_FN distlog_field distlog_field_make_u64(const char *key, uint64_t v) {
    distlog_field f;
    f.key = key;
    f.type = DISTLOG_FIELD_TYPE_U64;
    f.value.u64 = v;
    return f;
}
DISTLOG_INTERNAL_FIELD_FN distlog_field distlog_field_make_f64(const char *key, double v) {
    distlog_field f;
    f.key = key;
    f.type = DISTLOG_FIELD_TYPE_F64;
    f.value.f64 = v;
    return f;
}
DISTLOG_INTERNAL_FIELD_FN distlog_field distlog_field_make_bool(const char *key, int v) {
    distlog_field f;
    f.key = key;
    f.type = DISTLOG_FIELD_TYPE_BOOL;
    f.value.boolean = v ? 1 : 0;
    return f;
}
DISTLOG_INTERNAL_FIELD_FN distlog_field distlog_field_make_str(const char *key, const char *v) {
    distlog_field f;
    f.key = key;
    f.type = DISTLOG_FIELD_TYPE_STR;
    f.value.str = v;
    return f;
}

#ifndef __cplusplus
/* C99: compound literals with designated initialisers (expressions, usable
 * in array initialisers and as arguments). */
#define DISTLOG_FIELD_I64(k, v) \
    ((distlog_field){.key = (k), .type = DISTLOG_FIELD_TYPE_I64, .value = {.i64 = (int64_t)(v)}})
#define DISTLOG_FIELD_U64(k, v) \
    ((distlog_field){.key = (k), .type = DISTLOG_FIELD_TYPE_U64, .value = {.u64 = (uint64_t)(v)}})
#define DISTLOG_FIELD_F64(k, v) \
    ((distlog_field){.key = (k), .type = DISTLOG_FIELD_TYPE_F64, .value = {.f64 = (double)(v)}})
#define DISTLOG_FIELD_BOOL(k, v) \
    ((distlog_field){.key = (k), .type = DISTLOG_FIELD_TYPE_BOOL, .value = {.boolean = (v) ? 1 : 0}})
#define DISTLOG_FIELD_STR(k, v) \
    ((distlog_field){.key = (k), .type = DISTLOG_FIELD_TYPE_STR, .value = {.str = (v)}})
#else
/* C++: the inline constructors (no compound literals, no C++20). */
#define DISTLOG_FIELD_I64(k, v) distlog_field_make_i64((k), (int64_t)(v))
#define DISTLOG_FIELD_U64(k, v) distlog_field_make_u64((k), (uint64_t)(v))
#define DISTLOG_FIELD_F64(k, v) distlog_field_make_f64((k), (double)(v))
#define DISTLOG_FIELD_BOOL(k, v) distlog_field_make_bool((k), (v) ? 1 : 0)
#define DISTLOG_FIELD_STR(k, v) distlog_field_make_str((k), (v))
#endif

/* ------------------------------------------------------------------------ */
/* Events                                                                   */
/* ------------------------------------------------------------------------ */

/* Runtime strings: the convenient, slower path (the call site is looked up
 * by content on each call; no file/line). message may be NULL. Bad
 * arguments drop the record. */
void distlog_log(distlog_level level, const char *target, const char *message,
                 const distlog_field *fields, size_t nfields);

/* The static part of one macro call site. Initialised statically by the
 * macros (DISTLOG_CALLSITE_INIT); the library writes only the two
 * internal members. Not for direct use. */
typedef struct distlog_callsite {
    uint32_t internal_id;       /* written by the library: id + 1, 0 = new */
    uint32_t internal_interest; /* written by the library: cached filter verdict, 0 = new */
    int32_t level;              /* a distlog_level */
    uint32_t flags;             /* DISTLOG_CALLSITE_* */
    uint32_t line;
    const char *target;
    const char *message; /* the message, or the printf template */
    const char *file;
} distlog_callsite;

/* flags: message is a printf template, the text is formatted per call. */
#define DISTLOG_CALLSITE_FORMATTED 1u

#define DISTLOG_CALLSITE_INIT(level, target, message, flags) \
    {0u, 0u, (int32_t)(level), (uint32_t)(flags), (uint32_t)__LINE__, (target), (message), __FILE__}

/* 1 when the call site is enabled now (the printf macros ask before
 * formatting). */
int distlog_callsite_enabled(const distlog_callsite *cs);

/* Write an event of a static call site (what the printf macros of earlier
 * headers call). message NULL means the call site's message. Bad
 * arguments drop the record. */
void distlog_callsite_log(const distlog_callsite *cs, const char *message,
                          const distlog_field *fields, size_t nfields);

/* Write an event of a printf call site (DISTLOG_CALLSITE_FORMATTED) whose
 * text is formatted: text is len bytes (no NUL needed). What DISTLOG_LOGF
 * calls once distlog_callsite_enabled(cs) returned 1; it does not ask the
 * filter again. Bad arguments (also a call site without
 * DISTLOG_CALLSITE_FORMATTED) drop the record. */
void distlog_callsite_log_text(const distlog_callsite *cs, const char *text, size_t len);

/* The static part of one DISTLOG_EVENT call site: a distlog_callsite and
 * the field keys of its first call, which the call site's definition names
 * once so that later calls send values by position only (a key that
 * differs from the first call's is sent by name, as before). Initialised
 * statically by DISTLOG_EVENT; the library writes only the internal
 * members. Not for direct use. */
typedef struct distlog_event_callsite {
    distlog_callsite cs;
    const void *internal_keys; /* written by the library: NULL = new */
} distlog_event_callsite;

#define DISTLOG_EVENT_CALLSITE_INIT(level, target, message) \
    {DISTLOG_CALLSITE_INIT(level, target, message, 0u), NULL}

/* Write an event of a DISTLOG_EVENT call site with its own message (what
 * DISTLOG_EVENT calls). Bad arguments drop the record. */
void distlog_event_callsite_log(distlog_event_callsite *cs, const distlog_field *fields,
                                size_t nfields);

/* distlog_event_callsite_log with a per-thread cache of the library's
 * thread state, as distlog_event_kv_tl (what DISTLOG_EVENT calls where the
 * compiler has thread-locals, unless it converts the fields for
 * distlog_event_kv_tl). As there, the caller has just checked
 * DISTLOG_LEVEL_ON for the call site's level. */
void distlog_event_callsite_log_tl(void **tl, distlog_event_callsite *cs, const distlog_field *fields,
                                   size_t nfields);

/* The thread-local storage class of the macros' caches, if the compiler
 * has one. */
#if defined(__GNUC__) || defined(__clang__)
#define DISTLOG_INTERNAL_THREAD_LOCAL __thread
#elif defined(__cplusplus) && __cplusplus >= 201103L
#define DISTLOG_INTERNAL_THREAD_LOCAL thread_local
#elif !defined(__cplusplus) && defined(__STDC_VERSION__) && __STDC_VERSION__ >= 201112L && \
    !defined(__STDC_NO_THREADS__)
#define DISTLOG_INTERNAL_THREAD_LOCAL _Thread_local
#endif

/* Call cached(&cache, ...) with the expansion's own thread-local cache, or
 * plain(...) without thread-locals. */
#ifdef DISTLOG_INTERNAL_THREAD_LOCAL
#define DISTLOG_INTERNAL_CALL_CACHED(cached, plain, ...)                                         \
    do {                                                                                         \
        static DISTLOG_INTERNAL_THREAD_LOCAL void *distlog_internal_tl;                          \
        cached(&distlog_internal_tl, __VA_ARGS__);                                               \
    } while (0)
#else
#define DISTLOG_INTERNAL_CALL_CACHED(cached, plain, ...) plain(__VA_ARGS__)
#endif

/* The global level gate: two relaxed loads and a compare. */
#if defined(__GNUC__) || defined(__clang__)
#define DISTLOG_INTERNAL_MAX_LEVEL() \
    __atomic_load_n(__atomic_load_n(&distlog_max_level, __ATOMIC_RELAXED), __ATOMIC_RELAXED)
#else
#define DISTLOG_INTERNAL_MAX_LEVEL() \
    (*(volatile const uint8_t *)*(const uint8_t *volatile const *)&distlog_max_level)
#endif
#define DISTLOG_LEVEL_ON(level) ((int)(level) <= (int)DISTLOG_INTERNAL_MAX_LEVEL())

/* DISTLOG_EVENT is defined with DISTLOG_EVENT_KV below: with a constant
 * field count it calls the same function. */

/* ------------------------------------------------------------------------ */
/* Events with typed key/value arguments: the fastest call                  */
/* ------------------------------------------------------------------------ */

/* One field of DISTLOG_EVENT_KV: a distlog_field that also carries its
 * string's length, which the compiler computes (a constant for a literal),
 * so the library neither scans for the NUL nor copies with a call. Built by
 * DISTLOG_KV (C11: the field's type from the value's) or DISTLOG_KV_I64 ...
 * DISTLOG_KV_STR (C99, C++). */
typedef struct distlog_kv {
    const char *key; /* NUL-terminated; NULL skips the field */
    uint32_t type;   /* a distlog_field_type */
    uint32_t len;    /* DISTLOG_FIELD_TYPE_STR: bytes of value.str before its NUL */
    distlog_value value;
} distlog_kv;

DISTLOG_INTERNAL_FIELD_FN distlog_kv distlog_internal_kv(const char *key, uint32_t type, uint32_t len) {
    distlog_kv f;
    f.key = key;
    f.type = type;
    f.len = len;
    f.value.u64 = 0;
    return f;
}
DISTLOG_INTERNAL_FIELD_FN distlog_kv distlog_kv_i64(const char *key, int64_t v) {
    distlog_kv f = distlog_internal_kv(key, DISTLOG_FIELD_TYPE_I64, 0);
    f.value.i64 = v;
    return f;
}
DISTLOG_INTERNAL_FIELD_FN distlog_kv distlog_kv_u64(const char *key, uint64_t v) {
    distlog_kv f = distlog_internal_kv(key, DISTLOG_FIELD_TYPE_U64, 0);
    f.value.u64 = v;
    return f;
}
DISTLOG_INTERNAL_FIELD_FN distlog_kv distlog_kv_f64(const char *key, double v) {
    distlog_kv f = distlog_internal_kv(key, DISTLOG_FIELD_TYPE_F64, 0);
    f.value.f64 = v;
    return f;
}
DISTLOG_INTERNAL_FIELD_FN distlog_kv distlog_kv_bool(const char *key, int v) {
    distlog_kv f = distlog_internal_kv(key, DISTLOG_FIELD_TYPE_BOOL, 0);
    f.value.boolean = v ? 1 : 0;
    return f;
}
/* v NULL is written as "(null)". A string longer than UINT32_MAX bytes is
 * cut (the library keeps 16 KiB of any string anyway). */
DISTLOG_INTERNAL_FIELD_FN distlog_kv distlog_kv_str(const char *key, const char *v) {
    size_t n = v ? strlen(v) : 0;
    distlog_kv f = distlog_internal_kv(key, DISTLOG_FIELD_TYPE_STR, n > UINT32_MAX ? UINT32_MAX : (uint32_t)n);
    f.value.str = v;
    return f;
}

#define DISTLOG_KV_I64(k, v) distlog_kv_i64((k), (int64_t)(v))
#define DISTLOG_KV_U64(k, v) distlog_kv_u64((k), (uint64_t)(v))
#define DISTLOG_KV_F64(k, v) distlog_kv_f64((k), (double)(v))
#define DISTLOG_KV_BOOL(k, v) distlog_kv_bool((k), (v) ? 1 : 0)
#define DISTLOG_KV_STR(k, v) distlog_kv_str((k), (v))

#if !defined(__cplusplus) && defined(__STDC_VERSION__) && __STDC_VERSION__ >= 201112L
/* C11: the field's type from the value's (signed integers and char are
 * I64, unsigned U64, float and double F64, _Bool BOOL, char * and
 * const char * STR); any other type does not compile. Before C23 the
 * macros true and false are ints (I64): pass a bool, or (bool)x. */
#define DISTLOG_KV(k, v)                                                                        \
    _Generic((v),                                                                               \
        _Bool: distlog_kv_bool,                                                                 \
        char: distlog_kv_i64,                                                                   \
        signed char: distlog_kv_i64,                                                            \
        short: distlog_kv_i64,                                                                  \
        int: distlog_kv_i64,                                                                    \
        long: distlog_kv_i64,                                                                   \
        long long: distlog_kv_i64,                                                              \
        unsigned char: distlog_kv_u64,                                                          \
        unsigned short: distlog_kv_u64,                                                         \
        unsigned int: distlog_kv_u64,                                                           \
        unsigned long: distlog_kv_u64,                                                          \
        unsigned long long: distlog_kv_u64,                                                     \
        float: distlog_kv_f64,                                                                  \
        double: distlog_kv_f64,                                                                 \
        char *: distlog_kv_str,                                                                 \
        const char *: distlog_kv_str)((k), (v))
#endif

/* Write an event of a DISTLOG_EVENT_KV call site with its own message
 * (what DISTLOG_EVENT_KV calls): as distlog_event_callsite_log, each string
 * value of len bytes followed by its NUL. Bad arguments drop the record. */
void distlog_event_kv(distlog_event_callsite *cs, const distlog_kv *kv, size_t nkv);

/* distlog_event_kv with a per-thread cache of the library's thread state
 * (what DISTLOG_EVENT_KV calls where the compiler has thread-locals): tl
 * points to a thread-local void * of the caller, NULL before the thread's
 * first call, which only the library writes. Reading it is one
 * instruction in the program; the library's own thread-local, in a shared
 * object, is a call to __tls_get_addr. tl NULL is no cache. The caller has
 * just checked DISTLOG_LEVEL_ON for the call site's level (the common case
 * does not ask the level gate again). */
void distlog_event_kv_tl(void **tl, distlog_event_callsite *cs, const distlog_kv *kv, size_t nkv);

/* ------------------------------------------------------------------------ */
/* The inline event writer (GCC/clang, x86-64, thread-locals)               */
/* ------------------------------------------------------------------------ */

/* DISTLOG_EVENT_KV and DISTLOG_EVENT with a constant field count write the
 * common event from the caller's code into the thread's ring (as LTTng-UST
 * and the Linux perf ring do): the library owns a per-thread window (its
 * ring's position and cached bounds, the thread's id and scope), hands it
 * out through the call site's thread-local cache, and takes the call
 * whenever the inline writer declines: the thread's first event, a call
 * site not yet registered or not on by its cached verdict (also after
 * distlogd ctl changed the directives), a key that is not the literal the
 * call site registered, a string not ASCII or NULL or longer than 16 KiB,
 * a window to work out again (a full ring drops and counts there), a
 * nested call, an older sidecar (the postcard layout), a clock other than
 * the TSC. The record is the library's compact event (kind 4), byte for
 * byte; the sidecar cannot tell who wrote it. Everything below is
 * internal: its layout is DISTLOG_INTERNAL_WINDOW_ABI's, which the library
 * checks before it hands a window out. Define DISTLOG_NO_INLINE_WRITER to
 * always call the library. */
#if (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__) &&                          \
    defined(DISTLOG_INTERNAL_THREAD_LOCAL) && !defined(DISTLOG_NO_INLINE_WRITER)
#define DISTLOG_INTERNAL_INLINE_WRITER 1
#endif

/* The layout of the structs below; the library hands a window only to a
 * header of its own number. */
#define DISTLOG_INTERNAL_WINDOW_ABI 1

/* The thread's innermost scope as the library keeps it for the writer. */
typedef struct distlog_internal_top {
    uint64_t scope;
    unsigned char trace[16];
    uint8_t has_trace; /* 1: in a scope (the record carries its trace) */
} distlog_internal_top;

/* The ring's position and cached window, shared with the library's own
 * writer: bytes up to limit are free (released by the consumer, not past
 * the data region's end), a multiple of 8. */
typedef struct distlog_internal_cursor {
    uint64_t pos;
    uint64_t limit;
} distlog_internal_cursor;

/* The library's per-thread window: only the library and this thread's
 * inline writer touch it (process-private memory, none of it the
 * consumer's to write). */
typedef struct distlog_internal_window {
    uint32_t abi;      /* DISTLOG_INTERNAL_WINDOW_ABI */
    uint32_t ready;    /* 1: an exclusive ring, the TSC clock */
    uint32_t tid;      /* the thread's kernel id */
    uint8_t busy;      /* the thread is inside a log call (a bool) */
    const uint8_t *compact;  /* the sidecar reads compact records (a bool) */
    const uint64_t *epoch;   /* the filter epoch */
    const distlog_internal_top *top;
    distlog_internal_cursor *cursor;
    unsigned char *data;     /* the ring's data region */
    uint64_t mask;           /* its size - 1 */
    uint64_t max_window;     /* the largest record window */
    uint64_t *write_pos;     /* the ring header's published position */
    uint64_t *written;       /* the ring header's record count */
    const uint32_t *sleeping; /* the ring header's wake flag */
    uint64_t *dropped;        /* the ring header's count of dropped records */
    const uint64_t *read_pos; /* the consumer's released position (hostile) */
} distlog_internal_window;

/* What a registered call site's internal_keys points to: the address of
 * each registered key that is a literal (else an address no key has). */
typedef struct distlog_internal_keys {
    const uintptr_t *fixed;
    size_t n;
} distlog_internal_keys;

/* distlog_event_kv_tl for a header with the inline writer (what the
 * macros call when it declines): abi is DISTLOG_INTERNAL_WINDOW_ABI; the
 * library caches this thread's window in *tl only when it is its own
 * number (else every event of this program is a call). Not for direct
 * use. */
void distlog_event_kv_window(void **tl, uint32_t abi, distlog_event_callsite *cs,
                             const distlog_kv *kv, size_t nkv);

/* The inline writer committed an event and the sidecar sleeps: wake it
 * (w: the window, as the cache holds it). Not for direct use. */
void distlog_internal_window_wake(const void *w);

#ifdef DISTLOG_INTERNAL_INLINE_WRITER

/* The writer's functions are inlined where the call site's constants
 * (field count, types, literal lengths) fold them. */
#define DISTLOG_INTERNAL_INLINE static inline __attribute__((always_inline))

/* Most fields the inline writer takes (each field's code is unrolled). */
#define DISTLOG_INTERNAL_INLINE_FIELDS 8
/* Longest string it writes (the record's longest: longer ones are cut by
 * the library). */
#define DISTLOG_INTERNAL_INLINE_STR 16384u
/* The record header word's "committed" bit (1 << 29), and the compact event's
 * kind, head size and value tags (client/src/wire.rs, mod compact). */
#define DISTLOG_INTERNAL_VALID 536870912u
#define DISTLOG_INTERNAL_KIND_EVENT 4
#define DISTLOG_INTERNAL_HEAD 26u
#define DISTLOG_INTERNAL_TAG_BOOL 3
#define DISTLOG_INTERNAL_TAG_STR 4
#define DISTLOG_INTERNAL_HIGH8 0x8080808080808080ull

/* Whether field i of n (both constants after inlining) has a constant key:
 * the only kind the writer compares by address. */
#define DISTLOG_INTERNAL_KEY_CONST(kv, n, i)                                                     \
    ((size_t)(i) >= (size_t)(n) || __builtin_constant_p((kv)[i].key[0]))

/* Copy the n bytes of s to d if all are ASCII (then they are UTF-8, which
 * the record needs); 0 (d partly written, nothing published) otherwise.
 * Each byte is loaded once, in pieces that may overlap. */
DISTLOG_INTERNAL_INLINE int distlog_internal_put_ascii(unsigned char *d, const char *s, uint32_t n) {
    if (n >= 8) {
        uint64_t a, b;
        uint32_t i;
        for (i = 0; i + 8 <= n; i += 8) {
            memcpy(&a, s + i, 8);
            if (a & DISTLOG_INTERNAL_HIGH8)
                return 0;
            memcpy(d + i, &a, 8);
        }
        if (i < n) {
            memcpy(&b, s + n - 8, 8);
            if (b & DISTLOG_INTERNAL_HIGH8)
                return 0;
            memcpy(d + n - 8, &b, 8);
        }
        return 1;
    }
    if (n >= 4) {
        uint32_t a, b;
        memcpy(&a, s, 4);
        memcpy(&b, s + n - 4, 4);
        if ((a | b) & 0x80808080u)
            return 0;
        memcpy(d, &a, 4);
        memcpy(d + n - 4, &b, 4);
        return 1;
    }
    if (n > 0) {
        /* Positions 0, n/2 and n-1 cover every byte of 1 to 3. */
        unsigned char x = (unsigned char)s[0], y = (unsigned char)s[n / 2],
                      z = (unsigned char)s[n - 1];
        if ((x | y | z) & 0x80)
            return 0;
        d[0] = x;
        d[n / 2] = y;
        d[n - 1] = z;
    }
    return 1;
}

/* Bytes of field f as a compact value; 0: the writer declines it (an
 * unknown type, a NULL or too long string). */
DISTLOG_INTERNAL_INLINE size_t distlog_internal_value_bytes(const distlog_kv *f) {
    if (f->type >= DISTLOG_FIELD_TYPE_I64 && f->type <= DISTLOG_FIELD_TYPE_BOOL)
        return 9;
    if (f->type == DISTLOG_FIELD_TYPE_STR && f->value.str && f->len <= DISTLOG_INTERNAL_INLINE_STR)
        return 5 + (size_t)f->len;
    return 0;
}

/* Write field f's compact value at *p and move *p past it; 0 when a string
 * is not ASCII. */
DISTLOG_INTERNAL_INLINE int distlog_internal_put_value(unsigned char **p, const distlog_kv *f) {
    unsigned char *q = *p;
    if (f->type == DISTLOG_FIELD_TYPE_STR) {
        q[0] = DISTLOG_INTERNAL_TAG_STR;
        memcpy(q + 1, &f->len, 4);
        *p = q + 5 + f->len;
        return distlog_internal_put_ascii(q + 5, f->value.str, f->len);
    }
    if (f->type == DISTLOG_FIELD_TYPE_BOOL) {
        uint64_t b = f->value.boolean != 0;
        q[0] = DISTLOG_INTERNAL_TAG_BOOL;
        memcpy(q + 1, &b, 8);
    } else {
        /* I64, U64, F64: their tags are the type numbers less one, their
         * union members the same 8 bytes. */
        q[0] = (unsigned char)(f->type - 1);
        memcpy(q + 1, &f->value.u64, 8);
    }
    *p = q + 9;
    return 1;
}

/* Field i of n (constants) for each pass below. */
#define DISTLOG_INTERNAL_EACH(n, STEP)                                                           \
    STEP(0, n) STEP(1, n) STEP(2, n) STEP(3, n) STEP(4, n) STEP(5, n) STEP(6, n) STEP(7, n)
#define DISTLOG_INTERNAL_COPY_STEP(i, n)                                                         \
    if ((size_t)(i) < (size_t)(n))                                                               \
        to[i] = from[i];
#define DISTLOG_INTERNAL_KEY_STEP(i, n)                                                          \
    if ((size_t)(i) < (size_t)(n)) {                                                             \
        size_t b = distlog_internal_value_bytes(&v[i]);                                          \
        if ((uintptr_t)v[i].key != fixed[i] || b == 0)                                           \
            return 0;                                                                            \
        size += b;                                                                               \
    }
#define DISTLOG_INTERNAL_PUT_STEP(i, n)                                                          \
    if ((size_t)(i) < (size_t)(n) && !distlog_internal_put_value(&p, &v[i]))                    \
        ok = 0;

/* Room (bytes) at or below which the window is used up (the library's
 * own threshold for a record written in place): the writer drops and
 * counts when the ring is full, else leaves the window to the library,
 * which works it out again. A constant, so that a record known to be
 * smaller needs no other check of its size. */
#define DISTLOG_INTERNAL_MIN_ROOM 256u

/* The window is (nearly) used up at pos: 1, the event dropped and
 * counted, when the ring is full by the consumer's position loaded anew
 * (the library's Writer::window, same test), else 0: the library works
 * the window out again (or pads at the region's end). The consumer's
 * position only decides drop or call (never where to write): a hostile
 * one beyond pos makes the ring look full (unsigned wrap), as there.
 * Acquire pairs with the consumer's Release store of read_pos, as the
 * library's load (the library's window then starts from it). */
DISTLOG_INTERNAL_INLINE int distlog_internal_full(const distlog_internal_window *w, uint64_t pos) {
    uint64_t used = pos - __atomic_load_n(w->read_pos, __ATOMIC_ACQUIRE);
    if (used <= w->mask + 1 - DISTLOG_INTERNAL_MIN_ROOM)
        return 0;
    /* Relaxed: a counter the sidecar reads; nothing is published by it. */
    __atomic_fetch_add(w->dropped, 1, __ATOMIC_RELAXED);
    return 1;
}

/* Write the event of call site cs with the n fields v (n a constant of at
 * most DISTLOG_INTERNAL_INLINE_FIELDS) into the thread's window w, as the
 * library's push_in_place (client/src/ring.rs) does: 1 done (written, or
 * dropped and counted when the ring is full), 0 declined (nothing
 * published or counted: the caller calls the library).
 *
 * Orderings: the window and the cursor are written by this thread only
 * (by the library on this thread, or by a previous owner of the ring,
 * ordered by the ring slot's hand-over), so they are read plainly; the
 * call site's members and the ring header's words are the library's
 * atomics, used with the library's orderings (each says why below). The
 * ring's bytes alias everything (unsigned char), so every member of the
 * window is read before the first of them is written. */
DISTLOG_INTERNAL_INLINE int distlog_internal_write(distlog_internal_window *w, uint64_t ts,
                                                   distlog_event_callsite *cs, const distlog_kv *v,
                                                   size_t n) {
    const distlog_internal_keys *keys;
    const uintptr_t *fixed;
    const distlog_internal_top *top;
    distlog_internal_cursor *c;
    unsigned char *rec, *p;
    uint64_t *written_at, *write_pos;
    const uint32_t *sleeping;
    uint32_t id, tag, tid;
    uint64_t scope, pos, room, need, end, written;
    uint8_t has_trace;
    size_t head, size;
    int ok = 1;
    if (!w || !w->ready || w->busy)
        return 0;
    /* Relaxed: the flag publishes no memory, only which layout the
     * sidecar reads (as the library's Process::compact). */
    if (!__atomic_load_n(w->compact, __ATOMIC_RELAXED))
        return 0;
    /* The call site's verdict, cached as (epoch << 1) | on. Relaxed, both:
     * a verdict is only used under the epoch stored with it, and a stale
     * epoch makes this event one from just before the change (the
     * library's cached_verdict_on). */
    tag = (uint32_t)__atomic_load_n(w->epoch, __ATOMIC_RELAXED) << 1 | 1u;
    if (__atomic_load_n(&cs->cs.internal_interest, __ATOMIC_RELAXED) != tag)
        return 0;
    /* Acquire, both: pairs with the library's Release stores of the id
     * (after the keys) and of the keys (whose array is complete). */
    id = __atomic_load_n(&cs->cs.internal_id, __ATOMIC_ACQUIRE);
    keys = (const distlog_internal_keys *)__atomic_load_n(&cs->internal_keys, __ATOMIC_ACQUIRE);
    if (id == 0 || !keys || keys->n < n)
        return 0;
    fixed = keys->fixed;
    top = w->top;
    has_trace = top->has_trace;
    head = DISTLOG_INTERNAL_HEAD + (has_trace ? 16u : 0u);
    size = head;
    DISTLOG_INTERNAL_EACH(n, DISTLOG_INTERNAL_KEY_STEP)
    /* A record: its header word and payload, padded to 8 bytes. */
    need = (4 + size + 7) & ~(uint64_t)7;
    c = w->cursor;
    pos = c->pos;
    /* limit is a multiple of 8, never past the region's end nor into
     * bytes the consumer has not released (the library worked it out with
     * the consumer's position loaded with Acquire, on this thread or
     * before the ring's hand-over), so a record within it neither
     * straddles the end nor overtakes the consumer. The library takes
     * over near the end of the window. */
    room = c->limit - pos;
    if (room <= DISTLOG_INTERNAL_MIN_ROOM)
        return distlog_internal_full(w, pos);
    if (need > DISTLOG_INTERNAL_MIN_ROOM && (need > room || need > w->max_window))
        return 0;
    rec = w->data + (pos & w->mask);
    tid = w->tid;
    scope = top->scope;
    written_at = w->written;
    write_pos = w->write_pos;
    sleeping = w->sleeping;
    /* Busy before the first byte: a signal handler's event in between
     * goes to the library, which drops and counts it (as a nested call),
     * instead of writing at the same position. The signal fences keep the
     * compiler from moving the record's stores across the flag. */
    w->busy = 1;
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    p = rec + 4;
    id -= 1;
    p[0] = DISTLOG_INTERNAL_KIND_EVENT;
    memcpy(p + 1, &id, 4);
    memcpy(p + 5, &ts, 8);
    memcpy(p + 13, &tid, 4);
    memcpy(p + 17, &scope, 8);
    p[25] = has_trace;
    if (has_trace)
        memcpy(p + 26, top->trace, 16);
    p += head;
    DISTLOG_INTERNAL_EACH(n, DISTLOG_INTERNAL_PUT_STEP)
    if (ok) {
        /* Relaxed, the header word and written: the Release store of
         * write_pos publishes them (the reader loads it with Acquire and
         * only then reads what is before it); written has one writer. */
        __atomic_store_n((uint32_t *)(void *)rec, DISTLOG_INTERNAL_VALID | (uint32_t)size,
                         __ATOMIC_RELAXED);
        written = __atomic_load_n(written_at, __ATOMIC_RELAXED);
        __atomic_store_n(written_at, written + 1, __ATOMIC_RELAXED);
        end = pos + need;
        /* Relaxed: the cursor is this thread's (see above). */
        __atomic_store_n(&c->pos, end, __ATOMIC_RELAXED);
        /* Release pairs with the reader's Acquire load of write_pos: the
         * payload and header word above are visible to a reader that sees
         * the new position. */
        __atomic_store_n(write_pos, end, __ATOMIC_RELEASE);
    }
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    w->busy = 0;
    /* Relaxed: a stale 0 only delays the wake-up until the consumer's
     * timed wait ends (the library's backstop; no fence here either). */
    if (ok && __atomic_load_n(sleeping, __ATOMIC_RELAXED))
        distlog_internal_window_wake(w);
    return ok;
}

/* Call site cs's event with the n fields kv (n a constant): the inline
 * writer when every key is a constant (after inlining), else, or when it
 * declines, the library with the expansion's thread-local cache tl. */
DISTLOG_INTERNAL_INLINE void distlog_internal_event(void **tl, distlog_event_callsite *cs,
                                                    const distlog_kv *kv, size_t n) {
    /* The fields copied before the clock and the first atomic, which the
     * compiler treats as writing any memory whose address escaped: the
     * copy folds into constants, the array would be read back. */
    distlog_kv v[DISTLOG_INTERNAL_INLINE_FIELDS], to_call[DISTLOG_INTERNAL_INLINE_FIELDS];
    const distlog_kv *from = kv;
    distlog_kv *to = v;
    uint64_t ts;
    if (n > DISTLOG_INTERNAL_INLINE_FIELDS) {
        distlog_event_kv_window(tl, DISTLOG_INTERNAL_WINDOW_ABI, cs, kv, n);
        return;
    }
    DISTLOG_INTERNAL_EACH(n, DISTLOG_INTERNAL_COPY_STEP)
    /* The clock first: an rdtsc amid the stores stalls what follows it
     * (benches/proposals/README.md: the Rust event, 53.2 -> 48.4 ns). */
    ts = __builtin_ia32_rdtsc();
    if (DISTLOG_INTERNAL_KEY_CONST(v, n, 0) && DISTLOG_INTERNAL_KEY_CONST(v, n, 1) &&
        DISTLOG_INTERNAL_KEY_CONST(v, n, 2) && DISTLOG_INTERNAL_KEY_CONST(v, n, 3) &&
        DISTLOG_INTERNAL_KEY_CONST(v, n, 4) && DISTLOG_INTERNAL_KEY_CONST(v, n, 5) &&
        DISTLOG_INTERNAL_KEY_CONST(v, n, 6) && DISTLOG_INTERNAL_KEY_CONST(v, n, 7) &&
        distlog_internal_write((distlog_internal_window *)*tl, ts, cs, v, n))
        return;
    /* The library with a copy made here: the writer's copy never has its
     * address taken, so the compiler keeps it in registers (constants
     * fold), and this array is built on this path only. */
    from = v;
    to = to_call;
    DISTLOG_INTERNAL_EACH(n, DISTLOG_INTERNAL_COPY_STEP)
    distlog_event_kv_window(tl, DISTLOG_INTERNAL_WINDOW_ABI, cs, n ? to_call : NULL, n);
}

#define DISTLOG_INTERNAL_KV_CALL(cs, kv, n)                                                      \
    do {                                                                                         \
        static DISTLOG_INTERNAL_THREAD_LOCAL void *distlog_internal_tl;                          \
        distlog_internal_event(&distlog_internal_tl, (cs), (kv), (n));                           \
    } while (0)
#else
#define DISTLOG_INTERNAL_KV_CALL(cs, kv, n)                                                      \
    DISTLOG_INTERNAL_CALL_CACHED(distlog_event_kv_tl, distlog_event_kv, (cs), (kv), (n))
#endif

/* DISTLOG_EVENT with its fields as arguments, at least one, each a
 * DISTLOG_KV (C11) or DISTLOG_KV_<TYPE>:
 *   DISTLOG_EVENT_KV(DISTLOG_LEVEL_INFO, "checkout::pay", "paid",
 *                    DISTLOG_KV("order", order_id), DISTLOG_KV("cents", 1250u),
 *                    DISTLOG_KV("who", name));
 * The fastest call of this API: each string's length is computed here (a
 * constant for a literal), and with GCC/clang on x86-64, literal keys and
 * an optimising build the common event is written into the thread's ring
 * right here, without a call (see "The inline event writer" above; about
 * 110 instructions for a message, two integers and a short string, the
 * library call about 300). As for DISTLOG_EVENT, the first call's keys are
 * the call site's (later calls send values by position; keys written as
 * literals are compared by address); a key that differs goes by name.
 * level, target and message are literals; the fields are evaluated only
 * when the level is on. For no fields, use DISTLOG_EVENT(..., NULL, 0). */
#define DISTLOG_EVENT_KV(level, target, message, ...)                                          \
    do {                                                                                         \
        static distlog_event_callsite distlog_internal_cs =                                     \
            DISTLOG_EVENT_CALLSITE_INIT(level, target, message);                                 \
        if (DISTLOG_LEVEL_ON(level)) {                                                           \
            const distlog_kv distlog_internal_kv[] = {__VA_ARGS__};                              \
            DISTLOG_INTERNAL_KV_CALL(&distlog_internal_cs, distlog_internal_kv,                  \
                                     sizeof distlog_internal_kv / sizeof distlog_internal_kv[0]); \
        }                                                                                        \
    } while (0)

/* One distlog_field as a distlog_kv: the string's length computed here,
 * where the compiler folds it for a literal (DISTLOG_EVENT's usual
 * field). Member by member into its place: a distlog_kv returned by value
 * was built on the stack and copied in 16-byte loads of 8-byte stores,
 * which the CPU cannot forward (+4 ns an event). Not for direct use. */
DISTLOG_INTERNAL_FIELD_FN void distlog_internal_kv_of(distlog_kv *k, const distlog_field *f) {
    k->key = f->key;
    k->type = (uint32_t)f->type;
    k->len = 0;
    k->value = f->value;
    if (f->type == DISTLOG_FIELD_TYPE_STR && f->value.str) {
        size_t n = strlen(f->value.str);
        k->len = n > UINT32_MAX ? UINT32_MAX : (uint32_t)n;
    }
}

/* Most fields DISTLOG_EVENT converts in the caller (see below). */
#define DISTLOG_INTERNAL_KV_INLINE 8

/* Field i of DISTLOG_EVENT's array into the distlog_kv array, if there is
 * one (n is a constant: the test folds away). */
#define DISTLOG_INTERNAL_KV_AT(kv, f, n, i)                                                      \
    if ((size_t)(i) < (size_t)(n))                                                               \
    distlog_internal_kv_of(&(kv)[i], &(f)[i])

/* DISTLOG_EVENT's call. Where the field count is a constant (a literal,
 * sizeof arithmetic) of at most DISTLOG_INTERNAL_KV_INLINE, the fields
 * become distlog_kv here and go to distlog_event_kv_tl, the call of
 * DISTLOG_EVENT_KV: the compiler folds each literal string's length and
 * each field's type, and the library neither scans for the NUL nor
 * branches on the type it was given. Anything else (a count known at run
 * time, NULL fields) calls distlog_event_callsite_log_tl. Both record the
 * same event: the same call site, keys, types and checks. Needs
 * __builtin_constant_p (GCC, clang). */
#if defined(__GNUC__) || defined(__clang__)
#define DISTLOG_INTERNAL_EVENT_FIELDS(cs, fields, nfields)                                       \
    do {                                                                                         \
        const distlog_field *distlog_internal_f = (fields);                                      \
        if (__builtin_constant_p(nfields) && (size_t)(nfields) <= DISTLOG_INTERNAL_KV_INLINE &&  \
            ((size_t)(nfields) == 0 || distlog_internal_f != NULL)) {                            \
            distlog_kv distlog_internal_kvs[DISTLOG_INTERNAL_KV_INLINE];                          \
            DISTLOG_INTERNAL_KV_AT(distlog_internal_kvs, distlog_internal_f, nfields, 0);         \
            DISTLOG_INTERNAL_KV_AT(distlog_internal_kvs, distlog_internal_f, nfields, 1);         \
            DISTLOG_INTERNAL_KV_AT(distlog_internal_kvs, distlog_internal_f, nfields, 2);         \
            DISTLOG_INTERNAL_KV_AT(distlog_internal_kvs, distlog_internal_f, nfields, 3);         \
            DISTLOG_INTERNAL_KV_AT(distlog_internal_kvs, distlog_internal_f, nfields, 4);         \
            DISTLOG_INTERNAL_KV_AT(distlog_internal_kvs, distlog_internal_f, nfields, 5);         \
            DISTLOG_INTERNAL_KV_AT(distlog_internal_kvs, distlog_internal_f, nfields, 6);         \
            DISTLOG_INTERNAL_KV_AT(distlog_internal_kvs, distlog_internal_f, nfields, 7);         \
            DISTLOG_INTERNAL_KV_CALL((cs), (size_t)(nfields) ? distlog_internal_kvs : NULL,      \
                                     (size_t)(nfields));                                         \
        } else {                                                                                 \
            DISTLOG_INTERNAL_CALL_CACHED(distlog_event_callsite_log_tl, distlog_event_callsite_log, \
                                         (cs), distlog_internal_f, (nfields));                   \
        }                                                                                        \
    } while (0)
#else
#define DISTLOG_INTERNAL_EVENT_FIELDS(cs, fields, nfields)                                       \
    DISTLOG_INTERNAL_CALL_CACHED(distlog_event_callsite_log_tl, distlog_event_callsite_log, (cs), \
                                 (fields), (nfields))
#endif

/* The fast path. level, target and message are constants (literals);
 * fields/nfields are evaluated only when the level is on, each once. */
#define DISTLOG_EVENT(level, target, message, fields, nfields)                                   \
    do {                                                                                         \
        static distlog_event_callsite distlog_internal_cs =                                     \
            DISTLOG_EVENT_CALLSITE_INIT(level, target, message);                                 \
        if (DISTLOG_LEVEL_ON(level))                                                             \
            DISTLOG_INTERNAL_EVENT_FIELDS(&distlog_internal_cs, fields, nfields);                \
    } while (0)

/* Longest formatted message of the printf macros, NUL included; longer
 * text is cut. Define it before including this header to change it. */
#ifndef DISTLOG_MESSAGE_MAX
#define DISTLOG_MESSAGE_MAX 1024
#endif

#define DISTLOG_INTERNAL_FIRST(...) DISTLOG_INTERNAL_FIRST_(__VA_ARGS__, ~)
#define DISTLOG_INTERNAL_FIRST_(first, ...) first

/* printf-style, with a static call site whose name is the template. */
#define DISTLOG_LOGF(level, target, ...)                                                         \
    do {                                                                                         \
        static distlog_callsite distlog_internal_cs = DISTLOG_CALLSITE_INIT(                    \
            level, target, DISTLOG_INTERNAL_FIRST(__VA_ARGS__), DISTLOG_CALLSITE_FORMATTED);     \
        if (DISTLOG_LEVEL_ON(level) && distlog_callsite_enabled(&distlog_internal_cs)) {         \
            char distlog_internal_msg[DISTLOG_MESSAGE_MAX];                                      \
            int distlog_internal_n =                                                             \
                snprintf(distlog_internal_msg, sizeof distlog_internal_msg, __VA_ARGS__);        \
            /* snprintf counts what did not fit, and is negative on error. */                    \
            distlog_callsite_log_text(&distlog_internal_cs, distlog_internal_msg,                \
                                      distlog_internal_n < 0 ? (size_t)0                         \
                                      : (size_t)distlog_internal_n < sizeof distlog_internal_msg \
                                          ? (size_t)distlog_internal_n                           \
                                          : sizeof distlog_internal_msg - 1);                    \
        }                                                                                        \
    } while (0)

#define DISTLOG_ERROR(target, ...) DISTLOG_LOGF(DISTLOG_LEVEL_ERROR, target, __VA_ARGS__)
#define DISTLOG_WARN(target, ...) DISTLOG_LOGF(DISTLOG_LEVEL_WARN, target, __VA_ARGS__)
#define DISTLOG_INFO(target, ...) DISTLOG_LOGF(DISTLOG_LEVEL_INFO, target, __VA_ARGS__)
#define DISTLOG_DEBUG(target, ...) DISTLOG_LOGF(DISTLOG_LEVEL_DEBUG, target, __VA_ARGS__)
#define DISTLOG_TRACE(target, ...) DISTLOG_LOGF(DISTLOG_LEVEL_TRACE, target, __VA_ARGS__)

/* ------------------------------------------------------------------------ */
/* Scopes                                                                   */
/* ------------------------------------------------------------------------ */

/* An open scope (opaque). */
typedef struct distlog_scope distlog_scope;

/* Length of a W3C traceparent ("00-<32 hex>-<16 hex>-01") plus its NUL. */
#define DISTLOG_TRACEPARENT_LEN 56

/* Open a scope and enter it on the calling thread. Its parent is the
 * remote scope named by traceparent_or_null (W3C), else the thread's
 * current scope. A malformed traceparent starts a new trace (recorded in
 * field distlog.bad_traceparent). Scopes are not filtered by level.
 * Returns NULL (nothing opened) for a NULL or empty name, bad fields, or
 * before distlog_init; passing NULL on to the other scope calls is safe. */
distlog_scope *distlog_scope_open(const char *name, const char *traceparent_or_null,
                                  const distlog_field *fields, size_t nfields);

/* Write the scope's traceparent (55 chars + NUL) into buf of len bytes.
 * Errors: DISTLOG_NULL_PARAMETER (s or buf NULL), DISTLOG_BUFFER_TOO_SMALL
 * (len < DISTLOG_TRACEPARENT_LEN). */
distlog_result distlog_scope_traceparent(const distlog_scope *s, char *buf, size_t len);

/* distlog_scope_open, also given the W3C tracestate that came with the
 * traceparent: "distlog=<level>" in it records this scope and its children
 * up to that level (a per-request verbosity boost that follows the request
 * across services). */
distlog_scope *distlog_scope_open_with_state(const char *name, const char *traceparent_or_null,
                                             const char *tracestate_or_null,
                                             const distlog_field *fields, size_t nfields);

/* Enough bytes for any tracestate distlog_scope_tracestate writes. */
#define DISTLOG_TRACESTATE_LEN 32

/* Write the W3C tracestate to send beside the traceparent into buf of len
 * bytes: "distlog=<level>" when the scope is boosted, else "". Errors:
 * DISTLOG_NULL_PARAMETER, DISTLOG_BUFFER_TOO_SMALL. */
distlog_result distlog_scope_tracestate(const distlog_scope *s, char *buf, size_t len);

typedef enum distlog_outcome {
    DISTLOG_OUTCOME_OK = 0,
    DISTLOG_OUTCOME_ERROR = 1
} distlog_outcome;

/* Close the scope with outcome (any value but DISTLOG_OUTCOME_OK is an
 * error), leave it, and free the handle. NULL is a no-op. */
void distlog_scope_close(distlog_scope *s, distlog_outcome outcome);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* DISTLOG_H */
