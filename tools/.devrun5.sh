R=$PWD/build-ab/v; export LD_LIBRARY_PATH=$R; export MARLINRT_CACHE=/tmp/sv/c.db; mkdir -p /tmp/sv
$R/test_gemm gpu > $OUT/full.log 2>&1; echo "full rc=$?"; grep -m5 "ERROR:" $OUT/full.log
for rep in 1 2; do $R/test_gemm gpu "*wgmma*" > $OUT/w-$rep.log 2>&1; echo "rep $rep rc=$?"; grep -m3 "ERROR:" $OUT/w-$rep.log; done
for tool in racecheck memcheck; do MRT_TEST_QUICK=1 timeout 120 compute-sanitizer --tool $tool $R/test_gemm gpu "*wgmma*" > $OUT/san-$tool.log 2>&1; echo "$tool rc=$?"; tail -2 $OUT/san-$tool.log; done
for c in t256.m8.n16.k8.s4.g8 t256.m8.n16.k4.s4.g8 t256.m8.n8.k8.s4.g8 t256.m8.n16.k8.s3.g8; do
$R/marlinrt bench --shape 8192x8192,8192x57344,28672x8192,4096x28672 --m 256,512,1024 --group 128 --config $c 2>&1 | grep "^| [0-9]"; done
