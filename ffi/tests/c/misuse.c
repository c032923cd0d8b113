#define _POSIX_C_SOURCE 200809L
/* Argument misuse: every bad call returns an error (or is ignored) and the
 * process survives. Runs without a sidecar. Exits 0 and prints MISUSE OK. */
#include <distlog.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static int failures = 0;

#define CHECK(cond)                                                                  \
    do {                                                                             \
        if (!(cond)) {                                                               \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
            failures++;                                                              \
        }                                                                            \
    } while (0)

int main(void) {
    char buf[DISTLOG_TRACEPARENT_LEN + 8];
    const char bad_utf8[] = {'b', 'a', 'd', (char)0xff, (char)0xc3, '(', 0};

    /* Every code has a sentence, unknown ones too. */
    for (int r = 0; r <= 7; r++) {
        CHECK(distlog_result_str((distlog_result)r) != NULL);
        CHECK(strlen(distlog_result_str((distlog_result)r)) > 0);
    }
    CHECK(distlog_result_str((distlog_result)999) != NULL);
    CHECK(distlog_result_str((distlog_result)-1) != NULL);

    /* Before init: nothing is recorded, nothing crashes. */
    CHECK(distlog_enabled(DISTLOG_LEVEL_ERROR, "x") == 0);
    CHECK(distlog_scope_open("early", NULL, NULL, 0) == NULL);
    distlog_log(DISTLOG_LEVEL_ERROR, "x", "before init", NULL, 0);
    DISTLOG_ERROR("x", "before init %d", 1);
    distlog_shutdown();

    CHECK(distlog_init(NULL) == DISTLOG_NULL_PARAMETER);
    CHECK(distlog_init("") == DISTLOG_INVALID_ARGUMENT);
    CHECK(distlog_init("misuse") == DISTLOG_OK);
    CHECK(distlog_init("misuse-again") == DISTLOG_OK);
    CHECK(distlog_init(bad_utf8) == DISTLOG_OK);

    /* Levels. */
    CHECK(distlog_enabled(DISTLOG_LEVEL_INFO, "x") == 1);
    CHECK(distlog_enabled(DISTLOG_LEVEL_TRACE, "x") == 0);
    CHECK(distlog_enabled((distlog_level)0, "x") == 0);
    CHECK(distlog_enabled((distlog_level)6, "x") == 0);
    CHECK(distlog_enabled((distlog_level)-1, "x") == 0);
    CHECK(distlog_enabled((distlog_level)1000000, "x") == 0);
    CHECK(distlog_enabled(DISTLOG_LEVEL_INFO, NULL) == 0);
    CHECK(distlog_enabled(DISTLOG_LEVEL_INFO, bad_utf8) == 1);

    /* distlog_log: ignored or written, never a crash. */
    distlog_field good[1] = {DISTLOG_FIELD_I64("n", 1)};
    distlog_log((distlog_level)0, "x", "bad level", good, 1);
    distlog_log((distlog_level)99, "x", "bad level", good, 1);
    distlog_log(DISTLOG_LEVEL_INFO, NULL, "null target", good, 1);
    distlog_log(DISTLOG_LEVEL_INFO, "x", NULL, good, 1);
    distlog_log(DISTLOG_LEVEL_INFO, "x", "null fields, count 3", NULL, 3);
    distlog_log(DISTLOG_LEVEL_INFO, "x", "huge count", good, (size_t)1 << 40);
    distlog_log(DISTLOG_LEVEL_INFO, "x", "huge count", good, (size_t)-1);
    distlog_log(DISTLOG_LEVEL_INFO, "x", "count 257", good, 257);
    distlog_log(DISTLOG_LEVEL_INFO, "x", "no fields", NULL, 0);
    distlog_field odd[5] = {
        DISTLOG_FIELD_I64(NULL, 1),      /* skipped */
        DISTLOG_FIELD_STR("nullstr", NULL), /* "(null)" */
        DISTLOG_FIELD_STR(bad_utf8, bad_utf8),
        DISTLOG_FIELD_BOOL("b", 77),
        DISTLOG_FIELD_I64("typed", 3),
    };
    odd[4].type = (distlog_field_type)42; /* unknown type: skipped */
    distlog_log(DISTLOG_LEVEL_WARN, bad_utf8, bad_utf8, odd, 5);
    /* Many fields (slow path), some not UTF-8. */
    distlog_field many[DISTLOG_MAX_FIELDS];
    for (int i = 0; i < DISTLOG_MAX_FIELDS; i++) {
        many[i] = DISTLOG_FIELD_STR(i % 2 ? "k" : bad_utf8, i % 3 ? "v" : bad_utf8);
    }
    distlog_log(DISTLOG_LEVEL_WARN, "x", "many", many, DISTLOG_MAX_FIELDS);
    distlog_log(DISTLOG_LEVEL_WARN, "x", "too many", many, DISTLOG_MAX_FIELDS + 1);

    /* The macros' call sites. */
    DISTLOG_EVENT(DISTLOG_LEVEL_INFO, "x", "fine", good, 1);
    DISTLOG_EVENT(DISTLOG_LEVEL_INFO, "x", "null fields", NULL, 2);
    DISTLOG_EVENT(DISTLOG_LEVEL_INFO, "x", "huge", good, (size_t)1 << 33);
    DISTLOG_EVENT((distlog_level)0, "x", "level 0", good, 1);
    DISTLOG_EVENT((distlog_level)9, "x", "level 9", good, 1);
    DISTLOG_EVENT(DISTLOG_LEVEL_INFO, NULL, "null target", good, 1);
    DISTLOG_EVENT(DISTLOG_LEVEL_INFO, "x", NULL, good, 1);
    DISTLOG_INFO("x", "%s", bad_utf8);
    DISTLOG_EVENT_KV(DISTLOG_LEVEL_INFO, "x", "kv", DISTLOG_KV_STR(bad_utf8, bad_utf8), DISTLOG_KV_STR("n", NULL));
    {
        /* The kv call by hand: NULL site, NULL array, too many, a type
         * out of range, a NULL key, a length beyond the string's NUL is
         * the caller's lie (not tested); a NULL string with a length. */
        static distlog_event_callsite kcs = DISTLOG_EVENT_CALLSITE_INIT(DISTLOG_LEVEL_INFO, "x", "kv by hand");
        distlog_kv kv[3] = {DISTLOG_KV_I64("a", 1), DISTLOG_KV_STR(NULL, "v"), DISTLOG_KV_I64("c", 3)};
        kv[2].type = 0xffffffffu;
        distlog_event_kv(NULL, kv, 3);
        distlog_event_kv(&kcs, NULL, 3);
        distlog_event_kv(&kcs, kv, DISTLOG_MAX_FIELDS + 1);
        distlog_event_kv(&kcs, kv, 3);
        kv[1].key = "b";
        kv[1].value.str = NULL;
        kv[1].len = 5;
        distlog_event_kv(&kcs, kv, 3);
        distlog_event_kv(&kcs, NULL, 0);
    }
    distlog_callsite_log(NULL, "x", NULL, 0);
    distlog_callsite_log_text(NULL, "x", 1);
    {
        /* Not a printf site, then a NULL text, then an empty one. */
        static distlog_callsite plain = DISTLOG_CALLSITE_INIT(DISTLOG_LEVEL_INFO, "x", "plain", 0u);
        static distlog_callsite fmt =
            DISTLOG_CALLSITE_INIT(DISTLOG_LEVEL_INFO, "x", "%s", DISTLOG_CALLSITE_FORMATTED);
        distlog_callsite_log_text(&plain, "x", 1);
        distlog_callsite_log_text(&fmt, NULL, 5);
        distlog_callsite_log_text(&fmt, bad_utf8, strlen(bad_utf8));
        distlog_callsite_log_text(&fmt, "", 0);
    }
    CHECK(distlog_callsite_enabled(NULL) == 0);

    /* Scopes. */
    CHECK(distlog_scope_open(NULL, NULL, NULL, 0) == NULL);
    CHECK(distlog_scope_open("", NULL, NULL, 0) == NULL);
    CHECK(distlog_scope_open("s", NULL, NULL, 1) == NULL);
    CHECK(distlog_scope_open("s", NULL, good, (size_t)1 << 20) == NULL);
    distlog_scope *garbage = distlog_scope_open("s", "garbage", NULL, 0);
    CHECK(garbage != NULL);
    distlog_scope *weird = distlog_scope_open(bad_utf8, bad_utf8, odd, 5);
    CHECK(weird != NULL);

    memset(buf, 'Z', sizeof buf);
    CHECK(distlog_scope_traceparent(NULL, buf, sizeof buf) == DISTLOG_NULL_PARAMETER);
    CHECK(distlog_scope_traceparent(weird, NULL, sizeof buf) == DISTLOG_NULL_PARAMETER);
    CHECK(distlog_scope_traceparent(weird, buf, 10) == DISTLOG_BUFFER_TOO_SMALL);
    CHECK(distlog_scope_traceparent(weird, buf, DISTLOG_TRACEPARENT_LEN - 1) == DISTLOG_BUFFER_TOO_SMALL);
    CHECK(distlog_scope_traceparent(weird, buf, 0) == DISTLOG_BUFFER_TOO_SMALL);
    CHECK(buf[0] == 'Z'); /* outputs are written only on success */
    CHECK(distlog_scope_traceparent(weird, buf, DISTLOG_TRACEPARENT_LEN) == DISTLOG_OK);
    CHECK(strlen(buf) == DISTLOG_TRACEPARENT_LEN - 1);
    CHECK(strncmp(buf, "00-", 3) == 0);

    /* An imported traceparent keeps the trace id. */
    distlog_scope *remote = distlog_scope_open("remote", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", NULL, 0);
    CHECK(remote != NULL);
    CHECK(distlog_scope_traceparent(remote, buf, sizeof buf) == DISTLOG_OK);
    CHECK(strncmp(buf, "00-4bf92f3577b34da6a3ce929d0e0e4736-", 36) == 0);
    CHECK(strcmp(buf + 36, "00f067aa0ba902b7-01") != 0);
    distlog_scope_close(remote, DISTLOG_OUTCOME_OK);

    /* tracestate: a boost travels with the request; none gives "". */
    char ts[DISTLOG_TRACESTATE_LEN];
    distlog_scope *plain = distlog_scope_open("plain", NULL, NULL, 0);
    CHECK(distlog_scope_tracestate(plain, ts, sizeof ts) == DISTLOG_OK && ts[0] == 0);
    CHECK(distlog_scope_tracestate(NULL, ts, sizeof ts) == DISTLOG_NULL_PARAMETER);
    CHECK(distlog_scope_tracestate(plain, NULL, sizeof ts) == DISTLOG_NULL_PARAMETER);
    CHECK(distlog_scope_tracestate(plain, ts, 0) == DISTLOG_BUFFER_TOO_SMALL);
    distlog_scope_close(plain, DISTLOG_OUTCOME_OK);
    CHECK(distlog_enabled(DISTLOG_LEVEL_DEBUG, "x") == 0);
    distlog_scope *boosted = distlog_scope_open_with_state(
        "boosted", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "other=1,distlog=debug", NULL, 0);
    CHECK(boosted != NULL);
    CHECK(distlog_scope_tracestate(boosted, ts, sizeof ts) == DISTLOG_OK);
    CHECK(strcmp(ts, "distlog=debug") == 0);
    memset(ts, 'Z', sizeof ts);
    CHECK(distlog_scope_tracestate(boosted, ts, 5) == DISTLOG_BUFFER_TOO_SMALL && ts[0] == 'Z');
    CHECK(distlog_enabled(DISTLOG_LEVEL_DEBUG, "x") == 1); /* boosted inside */
    CHECK(distlog_enabled(DISTLOG_LEVEL_TRACE, "x") == 0);
    distlog_scope_close(boosted, DISTLOG_OUTCOME_OK);
    CHECK(distlog_enabled(DISTLOG_LEVEL_DEBUG, "x") == 0);
    CHECK(distlog_scope_open_with_state(NULL, NULL, "distlog=debug", NULL, 0) == NULL);

    distlog_scope_close(NULL, DISTLOG_OUTCOME_OK);
    distlog_scope_close(weird, (distlog_outcome)7);
    distlog_scope_close(garbage, DISTLOG_OUTCOME_ERROR);

    /* fork: the child logs into rings of its own and exits cleanly. */
    pid_t pid = fork();
    if (pid == 0) {
        distlog_scope *cs = distlog_scope_open("in-child", NULL, NULL, 0);
        DISTLOG_INFO("x", "from the child %d", (int)getpid());
        distlog_log(DISTLOG_LEVEL_INFO, "x", "child runtime", good, 1);
        distlog_scope_close(cs, DISTLOG_OUTCOME_OK);
        _exit(cs != NULL ? 0 : 3);
    }
    CHECK(pid > 0);
    int status = 0;
    CHECK(waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    DISTLOG_INFO("x", "parent after fork %d", 1);

    distlog_shutdown();
    distlog_shutdown();
    CHECK(distlog_enabled(DISTLOG_LEVEL_ERROR, "x") == 0);
    DISTLOG_ERROR("x", "after shutdown %d", 1);
    /* init again after shutdown enables logging again */
    CHECK(distlog_init("misuse") == DISTLOG_OK);
    CHECK(distlog_enabled(DISTLOG_LEVEL_ERROR, "x") == 1);
    distlog_shutdown();

    if (failures) {
        fprintf(stderr, "%d checks failed\n", failures);
        return 1;
    }
    printf("MISUSE OK\n");
    return 0;
}
