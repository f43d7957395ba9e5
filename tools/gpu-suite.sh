#!/usr/bin/env bash
# The GPU suite in one call.
#
#   tools/gpu-suite.sh build [DIR]   on a build machine (Debian 12 with the -dev packages):
#                                    build into DIR (default build-gpu) and copy libcmocka
#                                    beside it, so DIR can travel to a GPU machine that has no
#                                    -dev packages
#   tools/gpu-suite.sh run [DIR]     on the GPU machine: run every test program with the GPU
#                                    tests enabled, then compute-sanitizer memcheck and
#                                    racecheck on the GPU tests; fails if a GPU test skipped.
#                                    Logs go to $OUT (or DIR/gpu-logs): gpu.txt, summary.txt
#                                    and every program's log in test-logs.tgz.
#   tools/gpu-suite.sh bench [DIR]   on the GPU machine: on a fresh store, `marlinrt tune`
#                                    (bench's shapes and M), the recorded winners, then
#                                    `marlinrt bench` plain and with --static-weights:
#                                    tune.txt, winners.txt, bench.md, bench-static.md.
#   tools/gpu-suite.sh all [DIR]     run, then bench (bench runs even if a test failed; the
#                                    exit status is the suite's).
set -euo pipefail
mode=${1:-}
dir=${2:-build-gpu}

run_suite() {
  root=$(cd "$dir" && pwd)
  logs=${OUT:-$root/gpu-logs}
  mkdir -p "$logs/tests"
  export LD_LIBRARY_PATH="$root:${LD_LIBRARY_PATH:-}"
  export MRT_TEST_CLI="$root/marlinrt"
  store_root=$(mktemp -d)
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$logs/gpu.txt" || true
  MARLINRT_CACHE="$store_root/info/cache.db" "$root/marlinrt" info | tee -a "$logs/gpu.txt"
  failed=0 skipped=0 passed=0
  summary=""
  for test in "$root"/tests/test_*; do
    [ -x "$test" ] && [ -f "$test" ] || continue
    name=$(basename "$test")
    set +e
    MARLINRT_CACHE="$store_root/$name/cache.db" "$test" >"$logs/tests/$name.log" 2>&1
    rc=$?
    set -e
    case $rc in
      0) passed=$((passed + 1)); summary+="PASS $name"$'\n' ;;
      77) skipped=$((skipped + 1)); summary+="SKIP $name"$'\n' ;;
      *) failed=$((failed + 1)); summary+="FAIL $name (exit $rc)"$'\n'; tail -40 "$logs/tests/$name.log" ;;
    esac
  done
  # Memory and race checks of the kernels on the GPU tests.
  if command -v compute-sanitizer >/dev/null 2>&1; then
    # test_gemm under MRT_TEST_QUICK=1: a representative subset of shapes, M and configs.
    for tool in memcheck racecheck; do
      for prog in test_device test_gemm; do
        set +e
        MRT_TEST_QUICK=1 MARLINRT_CACHE="$store_root/sanitizer/cache.db" compute-sanitizer --tool "$tool" \
          --error-exitcode 3 "$root/tests/$prog" gpu >"$logs/tests/sanitizer-$tool-$prog.log" 2>&1
        rc=$?
        set -e
        if [ $rc -eq 0 ]; then summary+="PASS compute-sanitizer $tool $prog"$'\n'
        else failed=$((failed + 1)); summary+="FAIL compute-sanitizer $tool $prog (exit $rc)"$'\n'
          tail -40 "$logs/tests/sanitizer-$tool-$prog.log"; fi
      done
    done
  else
    summary+="SKIP compute-sanitizer (not installed)"$'\n'
    skipped=$((skipped + 1))
  fi
  rm -rf "$store_root"
  printf '%s' "$summary" | tee "$logs/summary.txt"
  echo "passed $passed, skipped $skipped, failed $failed" | tee -a "$logs/summary.txt"
  # One archive instead of a file per program: the device tool returns only a few files.
  tar czf "$logs/test-logs.tgz" -C "$logs" tests && rm -rf "$logs/tests"
  [ "$failed" -eq 0 ] && [ "$skipped" -eq 0 ]
}

run_bench() {
  root=$(cd "$dir" && pwd)
  logs=${OUT:-$root/gpu-logs}
  mkdir -p "$logs"
  export LD_LIBRARY_PATH="$root:${LD_LIBRARY_PATH:-}"
  local store
  store=$(mktemp -d)/cache.db
  local cli=("$root/marlinrt" --db "$store")
  { time "${cli[@]}" tune --budget 3000 --batches 10; } >"$logs/tune.txt" 2>&1
  "${cli[@]}" cache ls --tuning >"$logs/winners.txt"
  "${cli[@]}" bench | tee "$logs/bench.md"
  "${cli[@]}" bench --static-weights >"$logs/bench-static.md"
  rm -rf "$(dirname "$store")"
}

case "$mode" in
build)
  cmake -S . -B "$dir" -DMRT_WERROR=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo
  cmake --build "$dir" -j"$(nproc)"
  cp -a /usr/lib/x86_64-linux-gnu/libcmocka.so.0* "$dir"/
  ;;
run)
  run_suite
  ;;
bench)
  run_bench
  ;;
all)
  status=0
  run_suite || status=$?
  run_bench
  exit $status
  ;;
*)
  sed -n '2,18p' "$0"
  exit 2
  ;;
esac
