/* The end-to-end demo: typed fields, nested and remote scopes, printf
 * macros, the runtime path, several threads. Prints what the test checks
 * against the sidecar's records as "KEY value" lines on stdout. */
#include <distlog.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NTHREADS 4
#define PER_THREAD 25

static char root_tp[DISTLOG_TRACEPARENT_LEN];

static void check(distlog_result r, const char *what) {
    if (r != DISTLOG_OK) {
        fprintf(stderr, "%s: %s\n", what, distlog_result_str(r));
        exit(1);
    }
}

static void *worker(void *arg) {
    long n = (long)arg;
    char name[32];
    char tp[DISTLOG_TRACEPARENT_LEN];
    snprintf(name, sizeof name, "worker-%ld", n);
    /* A remote parent: the root scope's traceparent, as another process
     * would receive it. */
    distlog_field sf[1] = {DISTLOG_FIELD_I64("worker", n)};
    distlog_scope *s = distlog_scope_open(name, root_tp, sf, 1);
    if (!s) {
        fprintf(stderr, "scope_open failed\n");
        exit(1);
    }
    check(distlog_scope_traceparent(s, tp, sizeof tp), "worker traceparent");
    printf("TP_WORKER %ld %s\n", n, tp);
    for (int i = 0; i < PER_THREAD; i++) {
        distlog_field f[2] = {DISTLOG_FIELD_I64("thread", n), DISTLOG_FIELD_I64("i", i)};
        DISTLOG_EVENT(DISTLOG_LEVEL_INFO, "demo::worker", "tick", f, 2);
    }
    distlog_scope_close(s, DISTLOG_OUTCOME_OK);
    return NULL;
}

/* Runs after the thread's Rust thread-locals are gone (glibc runs them
 * before pthread key destructors): distlog_log must still deliver. */
static void log_at_exit(void *arg) {
    (void)arg;
    distlog_field f[1] = {DISTLOG_FIELD_I64("late", 1)};
    distlog_log(DISTLOG_LEVEL_INFO, "demo::exit", "thread exit", f, 1);
}

static void *exiting(void *arg) {
    pthread_key_t *key = (pthread_key_t *)arg;
    distlog_log(DISTLOG_LEVEL_INFO, "demo::exit", "thread start", NULL, 0);
    pthread_setspecific(*key, (void *)1);
    return NULL;
}

int main(void) {
    check(distlog_init("c-demo"), "distlog_init");

    distlog_field rf[2] = {DISTLOG_FIELD_U64("order", 42), DISTLOG_FIELD_STR("user", "ada")};
    distlog_scope *root = distlog_scope_open("request", NULL, rf, 2);
    if (!root) {
        fprintf(stderr, "scope_open failed\n");
        return 1;
    }
    check(distlog_scope_traceparent(root, root_tp, sizeof root_tp), "root traceparent");
    printf("TP_ROOT %s\n", root_tp);

    distlog_field f[5] = {
        DISTLOG_FIELD_I64("neg", -7),
        DISTLOG_FIELD_U64("big", UINT64_MAX),
        DISTLOG_FIELD_F64("ratio", 2.5),
        DISTLOG_FIELD_BOOL("ok", 1),
        DISTLOG_FIELD_STR("who", "grace"),
    };
    /* clang-format off */
    DISTLOG_EVENT(DISTLOG_LEVEL_INFO, "demo::main", "typed fields", f, 5); printf("LINE_TYPED %d\n", __LINE__);
    /* clang-format on */

    distlog_scope *child = distlog_scope_open("child", NULL, NULL, 0);
    char child_tp[DISTLOG_TRACEPARENT_LEN];
    check(distlog_scope_traceparent(child, child_tp, sizeof child_tp), "child traceparent");
    printf("TP_CHILD %s\n", child_tp);
    /* clang-format off */
    DISTLOG_WARN("demo::fmt", "formatted %d and %s", 7, "seven"); printf("LINE_FMT %d\n", __LINE__);
    DISTLOG_DEBUG("demo::fmt", "filtered out at the default level %d", 1);
    /* clang-format on */
    distlog_field one[1] = {DISTLOG_FIELD_STR("path", "/runtime")};
    distlog_log(DISTLOG_LEVEL_ERROR, "demo::runtime", "runtime message", one, 1);
    /* Not UTF-8: carried lossily (U+FFFD), in the message, key and value. */
    distlog_field bad[1] = {DISTLOG_FIELD_STR("k\xff", "v\xfe")};
    distlog_log(DISTLOG_LEVEL_INFO, "demo::bytes", "bad \xff bytes", bad, 1);
    /* One call site, keys that change between calls: the first call's keys
     * are the call site's (values by position), the others go by name, also
     * from the same buffer now holding other text, or not UTF-8. */
    size_t nkeys = (size_t)atoi("3");
    for (int k = 0; k < 3; k++) {
        char key[8];
        snprintf(key, sizeof key, k == 2 ? "k\xff" : "k%d", k);
        distlog_field kf[3] = {DISTLOG_FIELD_I64("same", k), DISTLOG_FIELD_STR(key, "v"),
                               DISTLOG_FIELD_STR(k == 1 ? "third" : "other", NULL)};
        DISTLOG_EVENT(DISTLOG_LEVEL_INFO, "demo::keys", "keys", kf, 3);
        /* The same with a count known at run time: the library takes the
         * field array (a constant count is converted by the header). */
        DISTLOG_EVENT(DISTLOG_LEVEL_INFO, "demo::keys_rt", "keys", kf, nkeys);
    }
    /* distlog_log caches its call sites by the target's text: one buffer
     * holding two targets in turn, and keys that change. */
    for (int k = 0; k < 3; k++) {
        char target[16];
        snprintf(target, sizeof target, "demo::rt%d", k % 2);
        distlog_field kf[1] = {DISTLOG_FIELD_I64(k == 2 ? "n2" : "n", k)};
        distlog_log(DISTLOG_LEVEL_INFO, target, "rt", kf, 1);
    }
    distlog_scope_close(child, DISTLOG_OUTCOME_ERROR);

    pthread_key_t key;
    pthread_t late;
    if (pthread_key_create(&key, log_at_exit) != 0 || pthread_create(&late, NULL, exiting, &key) != 0 ||
        pthread_join(late, NULL) != 0) {
        fprintf(stderr, "exiting thread failed\n");
        return 1;
    }

    pthread_t t[NTHREADS];
    for (long i = 0; i < NTHREADS; i++) {
        if (pthread_create(&t[i], NULL, worker, (void *)i) != 0) {
            fprintf(stderr, "pthread_create failed\n");
            return 1;
        }
    }
    for (int i = 0; i < NTHREADS; i++) {
        pthread_join(t[i], NULL);
    }

    distlog_scope_close(root, DISTLOG_OUTCOME_OK);
    printf("DONE\n");
    fflush(stdout);
    distlog_shutdown();
    return 0;
}
