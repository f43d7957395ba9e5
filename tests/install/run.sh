#!/bin/sh
# Install a marlinrt build into a temporary prefix, then build and run a small consumer program
# against the installed tree, as a user would: with find_package(marlinrt) (the shared and the
# static library) and with pkg-config (shared, and static with --static's private libraries).
#
# usage: run.sh BUILD_DIR SOURCE_DIR WORK_DIR CMAKE CC
set -eu
build=$1 source=$2 work=$3 cmake=$4 cc=$5
consumer="$source/tests/install"

rm -rf "$work"
mkdir -p "$work"
prefix="$work/prefix"

echo "== cmake --install $build --prefix $prefix"
"$cmake" --install "$build" --prefix "$prefix" > "$work/install.log"
test -f "$prefix/include/marlinrt.h"
"$prefix/bin/marlinrt" --version

for link in marlinrt::marlinrt marlinrt::marlinrt_static; do
  dir="$work/cmake-${link#marlinrt::}"
  echo "== find_package(marlinrt), linking $link"
  "$cmake" -S "$consumer" -B "$dir" -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_C_COMPILER="$cc" -DMRT_LINK="$link" \
    > "$work/configure-${link#marlinrt::}.log"
  "$cmake" --build "$dir" > "$work/build-${link#marlinrt::}.log"
  "$dir/consumer"
done
# The static consumer carries the library inside: no libmarlinrt.so at run time.
if ldd "$work/cmake-marlinrt_static/consumer" | grep -q libmarlinrt; then
  echo "the static consumer still needs libmarlinrt.so" >&2
  exit 1
fi

pc=$(find "$prefix" -name marlinrt.pc)
test -n "$pc"
PKG_CONFIG_PATH=$(dirname "$pc")
export PKG_CONFIG_PATH
libdir=$(pkg-config --variable=libdir marlinrt)

echo "== pkg-config --cflags --libs marlinrt: $(pkg-config --cflags --libs marlinrt)"
# shellcheck disable=SC2046 # pkg-config's output is a list of flags
"$cc" -o "$work/consumer-pc" "$consumer/consumer.c" $(pkg-config --cflags --libs marlinrt) -Wl,-rpath,"$libdir"
"$work/consumer-pc"

echo "== pkg-config --static --libs marlinrt: $(pkg-config --static --libs marlinrt)"
# The archive itself, then every library --static adds (its Libs.private).
# shellcheck disable=SC2046
"$cc" -o "$work/consumer-pc-static" "$consumer/consumer.c" $(pkg-config --cflags marlinrt) "$libdir/libmarlinrt.a" \
  $(pkg-config --static --libs marlinrt | sed 's/-lmarlinrt\b//')
"$work/consumer-pc-static"
echo "install test: ok"
