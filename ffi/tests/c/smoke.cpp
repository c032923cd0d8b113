// C++ includes the header, builds fields with the macros, logs and scopes.
#include <distlog.h>

#include <cstdio>
#include <string>

int main() {
    if (distlog_init("cpp-smoke") != DISTLOG_OK) {
        return 1;
    }
    std::string who = "bjarne";
    distlog_field f[5] = {
        DISTLOG_FIELD_I64("order", 42),     DISTLOG_FIELD_U64("big", 7u),
        DISTLOG_FIELD_F64("ratio", 0.5),    DISTLOG_FIELD_BOOL("ok", true),
        DISTLOG_FIELD_STR("who", who.c_str()),
    };
    distlog_scope *s = distlog_scope_open("cpp", nullptr, f, 5);
    DISTLOG_EVENT(DISTLOG_LEVEL_INFO, "cpp::main", "typed", f, 5);
    DISTLOG_EVENT(DISTLOG_LEVEL_INFO, "cpp::main", "no fields", nullptr, 0);
    DISTLOG_EVENT_KV(DISTLOG_LEVEL_INFO, "cpp::main", "kv", DISTLOG_KV_I64("order", 42), DISTLOG_KV_U64("big", 7u),
                     DISTLOG_KV_F64("ratio", 0.5), DISTLOG_KV_BOOL("ok", true), DISTLOG_KV_STR("who", who.c_str()));
    DISTLOG_INFO("cpp::main", "hello %s %d", who.c_str(), 3);
    DISTLOG_INFO("cpp::main", "no arguments");
    distlog_log(DISTLOG_LEVEL_WARN, "cpp::rt", "runtime", f, 5);
    char tp[DISTLOG_TRACEPARENT_LEN];
    if (distlog_scope_traceparent(s, tp, sizeof tp) != DISTLOG_OK) {
        return 1;
    }
    distlog_scope_close(s, DISTLOG_OUTCOME_OK);
    distlog_shutdown();
    std::printf("CPP OK %s\n", tp);
    return 0;
}
