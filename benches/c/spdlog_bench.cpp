// spdlog async logger to a file: the same event as every other peer,
// formatted in the caller (spdlog formats before it enqueues), written by
// spdlog's thread pool.
//   spdlog_bench DIR
#include <spdlog/async.h>
#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/spdlog.h>

#include <string>

#include "bench_common.h"

int main(int argc, char **argv) {
    std::string dir = argc > 1 ? argv[1] : "/tmp";
    bench_calibrate();
    spdlog::init_thread_pool(8192, 1);
    {
        auto lg = spdlog::basic_logger_mt<spdlog::async_factory_nonblock>("overrun", dir + "/spdlog-overrun.log", true);
        BENCH_RUN("c.enabled", "spdlog-async-overrun", "",
                  lg->info("message text a={} b={} s={}", (int64_t)i, (uint64_t)42, "short"));
        spdlog::drop("overrun");
    }
    {
        auto lg = spdlog::basic_logger_mt<spdlog::async_factory>("block", dir + "/spdlog-block.log", true);
        BENCH_RUN("c.enabled", "spdlog-async-block", "",
                  lg->info("message text a={} b={} s={}", (int64_t)i, (uint64_t)42, "short"));
    }
    spdlog::shutdown();
    return 0;
}
