/* The smallest C service using distlog.
 *
 *   cargo build --release -p distlog-ffi
 *   ffi/install.sh /tmp/distlog            (or NO_BUILD=1 ffi/install.sh ...)
 *   export PKG_CONFIG_PATH=/tmp/distlog/lib/pkgconfig
 *   cc -Wall -std=c11 examples/c/hello.c $(pkg-config --cflags --libs distlog) \
 *      -Wl,-rpath,/tmp/distlog/lib -o hello
 *   distlogd run --socket /tmp/d.sock --stdout &
 *   DISTLOG_SOCKET=/tmp/d.sock ./hello
 */
#include <distlog.h>

#include <stdio.h>

int main(int argc, char **argv) {
    distlog_result r = distlog_init("hello");
    if (r != DISTLOG_OK) {
        fprintf(stderr, "distlog_init: %s\n", distlog_result_str(r));
        return 1;
    }
    /* Continue a request from another service when its traceparent is
     * given, else start a new trace. */
    distlog_field sf[1] = {DISTLOG_FIELD_I64("argc", argc)};
    distlog_scope *s = distlog_scope_open("main", argc > 1 ? argv[1] : NULL, sf, 1);

    distlog_field f[2] = {DISTLOG_FIELD_STR("greeting", "hello"), DISTLOG_FIELD_F64("pi", 3.14159)};
    DISTLOG_EVENT(DISTLOG_LEVEL_INFO, "hello", "greeted", f, 2);
    DISTLOG_INFO("hello", "%d argument(s)", argc - 1);

    char tp[DISTLOG_TRACEPARENT_LEN];
    if (distlog_scope_traceparent(s, tp, sizeof tp) == DISTLOG_OK) {
        printf("traceparent for the next service: %s\n", tp);
    }
    distlog_scope_close(s, DISTLOG_OUTCOME_OK);
    distlog_shutdown();
    return 0;
}
