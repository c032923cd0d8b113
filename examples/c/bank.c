/* The demo's C service: "bank". Continues the request whose traceparent
 * (and tracestate) it gets on the command line, authorises a charge, and
 * declines some of them. Built and run by `scripts/demo`.
 *
 *   bank TRACEPARENT [TRACESTATE] AMOUNT_CENTS
 */
/* nanosleep is POSIX, not ISO C: scripts/demo builds with -std=c11. */
#define _POSIX_C_SOURCE 200809L

#include <distlog.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: bank TRACEPARENT [TRACESTATE] AMOUNT_CENTS\n");
        return 2;
    }
    const char *tp = argv[1];
    const char *ts = argc > 3 ? argv[2] : NULL;
    long amount = strtol(argv[argc - 1], NULL, 10);
    distlog_result r = distlog_init("bank");
    if (r != DISTLOG_OK) {
        fprintf(stderr, "distlog_init: %s\n", distlog_result_str(r));
        return 1;
    }
    distlog_field sf[1] = {DISTLOG_FIELD_I64("amount_cents", amount)};
    distlog_scope *s = distlog_scope_open_with_state("authorise", tp, ts, sf, 1);
    DISTLOG_DEBUG("bank::ledger", "looking up account for %ld cents", amount);
    sleep_ms(2 + amount % 5);
    distlog_outcome outcome = DISTLOG_OUTCOME_OK;
    if (amount % 3 == 0) {
        distlog_field f[2] = {DISTLOG_FIELD_STR("reason", "insufficient funds"), DISTLOG_FIELD_BOOL("retry", 0)};
        DISTLOG_EVENT(DISTLOG_LEVEL_ERROR, "bank::auth", "declined", f, 2);
        outcome = DISTLOG_OUTCOME_ERROR;
    } else {
        distlog_field f[1] = {DISTLOG_FIELD_U64("approval", (uint64_t)amount * 7919u)};
        DISTLOG_EVENT(DISTLOG_LEVEL_INFO, "bank::auth", "approved", f, 1);
    }
    distlog_scope_close(s, outcome);
    distlog_shutdown();
    return outcome == DISTLOG_OUTCOME_OK ? 0 : 3;
}
