R=$PWD/build-gpu; export LD_LIBRARY_PATH=$R; export MARLINRT_CACHE=/tmp/s/c.db; mkdir -p /tmp/s
$R/tests/test_gemm gpu > $OUT/full.log 2>&1; echo "full rc=$?"
grep -E "ERROR|FAILED" $OUT/full.log | head -20
MRT_TEST_QUICK=1 timeout 200 compute-sanitizer --tool racecheck $R/tests/test_gemm gpu "*wgmma*" > $OUT/san-racecheck.log 2>&1; echo "racecheck rc=$?"; tail -3 $OUT/san-racecheck.log
for c in t256.m8.n16.k4.s4.g8 t256.m8.n16.k4.s6.g8 t256.m8.n16.k8.s4.g8 t256.m16.n8.k8.s3.g8; do
  echo "== $c"; $R/marlinrt bench --shape 8192x8192,8192x57344,28672x8192,4096x28672 --m 512,1024 --group 128 --config $c 2>&1 | grep "^| [0-9]"
done > $OUT/bench.txt
cat $OUT/bench.txt
