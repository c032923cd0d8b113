/* The header's inline event writer (DISTLOG_EVENT_KV and DISTLOG_EVENT
 * with a constant count write the event from this program's code into the
 * thread's ring), built with -O2 as a program would be. Modes (argv[1]):
 *
 *   records  every type and kind of string through both macros, in a
 *            scope, a nested scope and none; strings the writer leaves to
 *            the library (not ASCII, NULL) in between; a header of another
 *            window ABI (the library hands it no window: every event is a
 *            call). Prints "KEY value" lines.
 *   burst    N events into the (small) ring as fast as they go: the ones
 *            that do not fit are dropped and counted.
 *   verdict  an INFO call site before and after `distlogd ctl` turns its
 *            target off and on again (stdin "go" once each change is
 *            made; the program waits until the filter has it).
 *   fork     an inline event, fork(), the child's inline events (after
 *            its own probe: the parent's window, inherited, must not be
 *            written), the parent's again. Prints "CHILD pid".
 *
 * Each mode first waits (polling, up to 10 s) until the inline writer
 * takes an event: the window opens on the thread's first event, and the
 * compact layout once the sidecar has answered. */
#define _GNU_SOURCE
#include <distlog.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void sleep_ms(long ms) {
    struct timespec d = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&d, NULL);
}

/* Until the inline writer takes an event of a probe call site (each try
 * it declines goes to the library: every try is a record). */
static int probe(void) {
    static distlog_event_callsite cs = DISTLOG_EVENT_CALLSITE_INIT(DISTLOG_LEVEL_INFO, "inline::probe",
                                                                   "probe");
    static __thread void *tl;
    for (int k = 0; k < 10000; k++) {
        distlog_kv kv[1] = {distlog_kv_i64("n", k)};
        if (distlog_internal_write((distlog_internal_window *)tl, __builtin_ia32_rdtsc(), &cs, kv, 1))
            return k + 1;
        distlog_event_kv_window(&tl, DISTLOG_INTERNAL_WINDOW_ABI, &cs, kv, 1);
        sleep_ms(1);
    }
    fprintf(stderr, "the inline writer never took an event\n");
    exit(1);
}

static void wait_go(void) {
    char line[16];
    if (!fgets(line, sizeof line, stdin) || strncmp(line, "go", 2) != 0)
        exit(1);
}

static const char *texts[] = {"first", "", "abc", "sixteen-bytes-16", "seventeen-bytes-17",
                              "a string longer than thirty-two bytes, copied whole", "h\xc3\xa9",
                              NULL, "bad\xff", "k"};
#define NTEXTS (int)(sizeof texts / sizeof texts[0])

static void both(int k) {
    DISTLOG_EVENT_KV(DISTLOG_LEVEL_INFO, "inline::kv", "kv", DISTLOG_KV("i", -k),
                     DISTLOG_KV("u", (unsigned)k * 3u), DISTLOG_KV("f", k + 0.5),
                     DISTLOG_KV("b", (bool)(k & 1)), DISTLOG_KV("s", texts[k % NTEXTS]));
    distlog_field f[3] = {DISTLOG_FIELD_I64("i", -k), DISTLOG_FIELD_STR("s", texts[k % NTEXTS]),
                          DISTLOG_FIELD_BOOL("b", k & 1)};
    DISTLOG_EVENT(DISTLOG_LEVEL_INFO, "inline::fields", "fields", f, 3);
}

/* A scope opened and entered, its traceparent printed as "LABEL tp". */
static distlog_scope *open_scope(const char *name, const char *label) {
    char tp[DISTLOG_TRACEPARENT_LEN];
    distlog_scope *s = distlog_scope_open(name, NULL, NULL, 0);
    if (!s || distlog_scope_traceparent(s, tp, sizeof tp) != DISTLOG_OK)
        exit(1);
    printf("%s %s\n", label, tp);
    return s;
}

static int records(void) {
    int k = 0;
    distlog_scope *outer = open_scope("outer", "TP_OUTER");
    for (; k < 2 * NTEXTS; k++)
        both(k);
    distlog_scope *inner = open_scope("inner", "TP_INNER");
    for (; k < 3 * NTEXTS; k++)
        both(k);
    distlog_scope_close(inner, DISTLOG_OUTCOME_OK);
    for (; k < 4 * NTEXTS; k++)
        both(k);
    distlog_scope_close(outer, DISTLOG_OUTCOME_OK);
    for (; k < 5 * NTEXTS; k++)
        both(k);
    printf("EVENTS %d\n", k);

    /* A header of another window ABI: the library keeps no window (and no
     * cache) in tl, the inline writer declines, every event is a call. */
    static distlog_event_callsite abi_cs = DISTLOG_EVENT_CALLSITE_INIT(DISTLOG_LEVEL_INFO,
                                                                       "inline::abi", "abi");
    static __thread void *tl_other;
    static __thread void *tl_same;
    for (int j = 0; j < 3; j++) {
        distlog_kv kv[1] = {distlog_kv_i64("j", j)};
        distlog_event_kv_window(&tl_other, DISTLOG_INTERNAL_WINDOW_ABI + 1, &abi_cs, kv, 1);
        if (distlog_internal_write((distlog_internal_window *)tl_other, __builtin_ia32_rdtsc(), &abi_cs, kv, 1))
            return 1;
    }
    {
        distlog_kv kv[1] = {distlog_kv_i64("j", 3)};
        distlog_event_kv_window(&tl_same, DISTLOG_INTERNAL_WINDOW_ABI, &abi_cs, kv, 1);
    }
    const distlog_internal_window *w = (const distlog_internal_window *)tl_same;
    printf("ABI_OTHER %s\n", tl_other ? "window" : "none");
    printf("ABI_SAME %s\n", w && w->abi == DISTLOG_INTERNAL_WINDOW_ABI && w->ready ? "window" : "none");
    return 0;
}

static int burst(int n) {
    for (int k = 0; k < n; k++)
        DISTLOG_EVENT_KV(DISTLOG_LEVEL_INFO, "inline::burst", "burst", DISTLOG_KV("seq", k),
                         DISTLOG_KV("s", "short"));
    printf("SENT %d\n", n);
    return 0;
}

static void noisy(int seq) {
    DISTLOG_EVENT_KV(DISTLOG_LEVEL_INFO, "inline::noisy", "noisy", DISTLOG_KV("seq", seq));
}

/* Until distlog_enabled says `on` for the call site's level and target:
 * the client has applied the sidecar's new directives. */
static void until_enabled(int on) {
    for (int k = 0; k < 10000; k++) {
        if (distlog_enabled(DISTLOG_LEVEL_INFO, "inline::noisy") == on)
            return;
        sleep_ms(1);
    }
    fprintf(stderr, "the directives never arrived\n");
    exit(1);
}

static int verdict(void) {
    noisy(0);
    noisy(1);
    printf("READY off\n");
    fflush(stdout);
    wait_go();
    until_enabled(0);
    noisy(2);
    noisy(3);
    printf("READY on\n");
    fflush(stdout);
    wait_go();
    until_enabled(1);
    noisy(4);
    noisy(5);
    return 0;
}

static void forked(const char *who, int seq) {
    DISTLOG_EVENT_KV(DISTLOG_LEVEL_INFO, "inline::fork", "fork", DISTLOG_KV("who", who),
                     DISTLOG_KV("seq", seq));
}

/* A pre-forking server's life: the child's inline writer must write into
 * a ring of the child's own (the fork handler closed the inherited window;
 * the library claims a new ring and opens a window on it), never into the
 * parent's, which the child's memory still maps. */
static int fork_mode(void) {
    /* The call site hot (registered, its verdict cached) before the fork:
     * the child's first event would be the inline writer's. */
    for (int k = 0; k < 3; k++)
        forked("parent", k);
    pid_t pid = fork();
    if (pid == 0) {
        forked("child", 0); /* the library's: the window is closed */
        probe();
        forked("child", 1);
        forked("child", 2);
        distlog_shutdown();
        _exit(0);
    }
    if (pid < 0)
        return 1;
    int status = 0;
    if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
        return 1;
    printf("CHILD %d\n", (int)pid);
    forked("parent", 3);
    return 0;
}

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "";
    int rc = 1;
    if (distlog_init("c-inline") != DISTLOG_OK) {
        fprintf(stderr, "distlog_init failed\n");
        return 1;
    }
    printf("PROBES %d\n", probe());
    if (strcmp(mode, "records") == 0)
        rc = records();
    else if (strcmp(mode, "burst") == 0)
        rc = burst(argc > 2 ? atoi(argv[2]) : 0);
    else if (strcmp(mode, "verdict") == 0)
        rc = verdict();
    else if (strcmp(mode, "fork") == 0)
        rc = fork_mode();
    if (rc == 0)
        printf("DONE\n");
    fflush(stdout);
    distlog_shutdown();
    return rc;
}
