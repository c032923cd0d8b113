#!/bin/sh
# Install the distlog C API under PREFIX:
#   PREFIX/lib/libdistlog_ffi.so, PREFIX/lib/libdistlog_ffi.a,
#   PREFIX/include/distlog.h, PREFIX/lib/pkgconfig/distlog.pc
#
# usage: ffi/install.sh PREFIX        (builds with cargo --release first)
#        NO_BUILD=1 ffi/install.sh PREFIX   (installs what target/release has)
#
# Then: cc app.c $(PKG_CONFIG_PATH=PREFIX/lib/pkgconfig pkg-config --cflags --libs distlog)
# or, static: pkg-config --static --cflags --libs distlog (links the .a only
# when no .so is next to it, or name PREFIX/lib/libdistlog_ffi.a directly).
set -eu

if [ $# -ne 1 ]; then
    echo "usage: $0 PREFIX" >&2
    exit 2
fi
prefix=$1
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
target=${CARGO_TARGET_DIR:-$root/target}/release

if [ -z "${NO_BUILD:-}" ]; then
    (cd "$root" && cargo build --release -p distlog-ffi)
fi
for f in libdistlog_ffi.so libdistlog_ffi.a; do
    [ -f "$target/$f" ] || { echo "$target/$f missing: run cargo build --release -p distlog-ffi" >&2; exit 1; }
done

version=$(sed -n 's/^version *= *"\(.*\)"/\1/p' "$root/Cargo.toml" | head -n 1)
# The system libraries the static library needs, as rustc reports them
# (`cargo rustc -p distlog-ffi --release --crate-type staticlib -- --print
# native-static-libs`), on Linux/glibc:
private_libs="-lgcc_s -lutil -lrt -lpthread -lm -ldl -lc"

mkdir -p "$prefix/lib/pkgconfig" "$prefix/include"
install -m 0755 "$target/libdistlog_ffi.so" "$prefix/lib/"
install -m 0644 "$target/libdistlog_ffi.a" "$prefix/lib/"
install -m 0644 "$root/include/distlog.h" "$prefix/include/"
abs_prefix=$(cd "$prefix" && pwd)
sed -e "s|@PREFIX@|$abs_prefix|" -e "s|@VERSION@|$version|" -e "s|@PRIVATE_LIBS@|$private_libs|" \
    "$here/distlog.pc.in" > "$prefix/lib/pkgconfig/distlog.pc"
echo "installed distlog $version under $abs_prefix"
