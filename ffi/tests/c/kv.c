/* DISTLOG_EVENT_KV end to end: every type through DISTLOG_KV (C11
 * _Generic) and the explicit DISTLOG_KV_<TYPE>, strings that are literals,
 * buffers, NULL, long, not UTF-8, keys that change between calls of one
 * call site, every type and kind of string on a call site's later calls
 * (the fast path), the same through DISTLOG_EVENT's field array, and
 * events in a scope. Prints what the test checks as
 * "KEY value" lines on stdout. */
#include <distlog.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define ROUNDS 3

/* Time for the connection (the compact layout), so that a build with the
 * header's inline writer (-O2) takes the later events inline. A slower
 * connection only means fewer inline events. */
static void settle(void) {
    struct timespec d = {0, 300000000L};
    nanosleep(&d, NULL);
}

int main(void) {
    if (distlog_init("c-kv") != DISTLOG_OK) {
        fprintf(stderr, "distlog_init failed\n");
        return 1;
    }
    settle();
    char buf[64];
    snprintf(buf, sizeof buf, "buffer-%d", 7);
    const char *none = NULL;
    bool yes = true; /* a bool; the macro true is an int before C23 */
    const char *long_text = "a string longer than thirty-two bytes, copied whole";
    /* The call site's line is the macro's first. */
    printf("LINE_TYPES %d\n", __LINE__ + 1);
    DISTLOG_EVENT_KV(DISTLOG_LEVEL_INFO, "kv::types", "types",
                     DISTLOG_KV("int", -3), DISTLOG_KV("lng", -4000000000L),
                     DISTLOG_KV("uint", 3u), DISTLOG_KV("ull", 18446744073709551615ull),
                     DISTLOG_KV("char", 'x'), DISTLOG_KV("dbl", 2.5), DISTLOG_KV("flt", 0.5f),
                     DISTLOG_KV("yes", yes), DISTLOG_KV("one", true), DISTLOG_KV("no", (_Bool)0),
                     DISTLOG_KV("lit", "short"), DISTLOG_KV("buf", buf), DISTLOG_KV("null", none),
                     DISTLOG_KV("empty", ""), DISTLOG_KV("long", long_text));
    DISTLOG_EVENT_KV(DISTLOG_LEVEL_INFO, "kv::explicit", "explicit", DISTLOG_KV_I64("i", 5),
                     DISTLOG_KV_U64("u", 6), DISTLOG_KV_F64("f", 1.25), DISTLOG_KV_BOOL("b", 2),
                     DISTLOG_KV_STR("s", "seven"));
    /* Not UTF-8: carried lossily (U+FFFD), in the key and the value. */
    DISTLOG_EVENT_KV(DISTLOG_LEVEL_INFO, "kv::bytes", "bytes", DISTLOG_KV("k\xff", "v\xfe"));
    /* Filtered out at the default level: its arguments are not evaluated. */
    DISTLOG_EVENT_KV(DISTLOG_LEVEL_DEBUG, "kv::debug", "debug", DISTLOG_KV("never", (abort(), 1)));
    /* One call site, every type again after its first call (the values by
     * position, written in place), with strings of each kind. */
    const char *texts[] = {"first", "", "abc", "sixteen-bytes-16", "seventeen-bytes-7", "h\xc3\xa9",
                           "bad\xff", NULL};
    for (int k = 0; k < (int)(sizeof texts / sizeof texts[0]); k++)
        DISTLOG_EVENT_KV(DISTLOG_LEVEL_INFO, "kv::again", "again", DISTLOG_KV("s", texts[k]),
                         DISTLOG_KV("i", -k), DISTLOG_KV("u", (unsigned)k), DISTLOG_KV("f", k + 0.5),
                         DISTLOG_KV("b", (bool)(k & 1)));
    /* The same through DISTLOG_EVENT's field array: with a constant count
     * the header converts the fields to distlog_kv (kv::fields), with a
     * count known at run time the library takes the array
     * (kv::fields_rt); both record what DISTLOG_EVENT_KV does. */
    size_t nfields = (size_t)atoi("5");
    for (int k = 0; k < (int)(sizeof texts / sizeof texts[0]); k++) {
        distlog_field f[5] = {DISTLOG_FIELD_STR("s", texts[k]), DISTLOG_FIELD_I64("i", -k),
                              DISTLOG_FIELD_U64("u", k), DISTLOG_FIELD_F64("f", k + 0.5),
                              DISTLOG_FIELD_BOOL("b", k & 1)};
        DISTLOG_EVENT(DISTLOG_LEVEL_INFO, "kv::fields", "fields", f, 5);
        DISTLOG_EVENT(DISTLOG_LEVEL_INFO, "kv::fields_rt", "fields", f, nfields);
    }

    /* One call site, called ROUNDS times in a scope: the first call's keys
     * are the call site's; a key from a buffer goes by position while its
     * text is the same, by name once it changes. */
    distlog_scope *s = distlog_scope_open("kv-scope", NULL, NULL, 0);
    char tp[DISTLOG_TRACEPARENT_LEN];
    if (!s || distlog_scope_traceparent(s, tp, sizeof tp) != DISTLOG_OK) {
        fprintf(stderr, "scope failed\n");
        return 1;
    }
    printf("TP %s\n", tp);
    for (int k = 0; k < ROUNDS; k++) {
        char key[8];
        char val[8];
        snprintf(key, sizeof key, k == 2 ? "k2" : "k");
        snprintf(val, sizeof val, "v%d", k);
        DISTLOG_EVENT_KV(DISTLOG_LEVEL_INFO, "kv::loop", "loop", DISTLOG_KV("n", k), DISTLOG_KV(key, val),
                         DISTLOG_KV(k == 1 ? "third" : "other", (unsigned)k));
    }
    distlog_scope_close(s, DISTLOG_OUTCOME_OK);
    printf("DONE\n");
    fflush(stdout);
    distlog_shutdown();
    return 0;
}
