R=$PWD/build-gpu; export LD_LIBRARY_PATH=$R; export MARLINRT_CACHE=/tmp/s/c.db; mkdir -p /tmp/s
MRT_TEST_QUICK=1 $R/tests/test_gemm gpu > $OUT/quick.log 2>&1
grep -E "ERROR|FAILED|OK" $OUT/quick.log | head -30
for tool in racecheck memcheck synccheck; do
MRT_TEST_QUICK=1 timeout 150 compute-sanitizer --tool $tool --print-limit 20 $R/tests/test_gemm gpu "*wgmma*" > $OUT/san-$tool.log 2>&1; echo "$tool rc=$?"; grep -m5 -E "ERROR|Error|error|hazard" $OUT/san-$tool.log
done
