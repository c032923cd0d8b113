/* DISTLOG_EVENT_KV's and DISTLOG_EVENT's per-thread cache of the library's
 * thread state: one call site of each called from three threads in turn, and once more from a
 * thread's pthread key destructor after the library's own thread state
 * was dropped: that event finds the state gone and goes to the shared
 * ring, not into the ring the thread released (which the next thread
 * claims). Prints "TID_<name> tid" lines. */
#define _GNU_SOURCE
#include <distlog.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

/* Not a constant to the compiler. */
static volatile size_t nfields = 2;

static void emit(int n) {
    DISTLOG_EVENT_KV(DISTLOG_LEVEL_INFO, "kv::tl", "tl", DISTLOG_KV("n", n), DISTLOG_KV("s", "text"));
    /* DISTLOG_EVENT keeps the same cache, with a constant count (which
     * calls what DISTLOG_EVENT_KV calls) and with one known at run time
     * (distlog_event_callsite_log_tl). */
    distlog_field f[2] = {DISTLOG_FIELD_I64("n", n), DISTLOG_FIELD_STR("s", "text")};
    DISTLOG_EVENT(DISTLOG_LEVEL_INFO, "kv::tl", "ev", f, 2);
    DISTLOG_EVENT(DISTLOG_LEVEL_INFO, "kv::tl", "rt", f, nfields);
}

static pthread_key_t key;

/* A pthread key destructor that logs in the second round of the thread's
 * destructors: by then the library's thread state is gone (whether its
 * destructor runs before the keys' or as one of them, in the first
 * round). */
static void late(void *arg) {
    static __thread int rounds;
    (void)arg;
    if (rounds++ == 0) {
        if (pthread_setspecific(key, &key) != 0)
            abort();
        return;
    }
    emit(100);
}

static void *run(void *arg) {
    int base = *(int *)arg;
    printf("TID_%d %ld\n", base, (long)gettid());
    for (int k = 0; k < 3; k++)
        emit(base + k);
    if (base == 0 && pthread_setspecific(key, &key) != 0)
        abort();
    return NULL;
}

int main(void) {
    if (distlog_init("c-kv-threads") != DISTLOG_OK || pthread_key_create(&key, late) != 0) {
        fprintf(stderr, "init failed\n");
        return 1;
    }
    /* Time for the connection (the compact layout), so that a build with
     * the header's inline writer (-O2) takes its events inline, also the
     * one after the thread's state was dropped, which it must decline. A
     * slower connection only means fewer inline events. */
    struct timespec d = {0, 300000000L};
    nanosleep(&d, NULL);
    int bases[] = {0, 10};
    for (int t = 0; t < 2; t++) {
        pthread_t th;
        if (pthread_create(&th, NULL, run, &bases[t]) != 0 || pthread_join(th, NULL) != 0)
            return 1;
    }
    printf("TID_main %ld\n", (long)gettid());
    emit(20);
    printf("DONE\n");
    fflush(stdout);
    distlog_shutdown();
    return 0;
}
