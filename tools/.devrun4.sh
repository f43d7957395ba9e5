for v in w1f; do
R=$PWD/build-ab/$v; export LD_LIBRARY_PATH=$R; export MARLINRT_CACHE=/tmp/s$v/c.db; mkdir -p /tmp/s$v
for rep in 1 2 3; do $R/test_gemm gpu "*wgmma*" > $OUT/$v-$rep.log 2>&1; echo "$v rep $rep rc=$?"; grep -m3 "ERROR:" $OUT/$v-$rep.log; done
$R/test_gemm gpu "*every_m*" > $OUT/$v-m.log 2>&1; echo "$v every_m rc=$?"; grep -m3 "ERROR:" $OUT/$v-m.log
$R/marlinrt bench --shape 8192x8192,8192x57344,28672x8192 --m 512 --group 128 --config t256.m8.n16.k8.s4.g8 2>&1 | grep "^| [0-9]"
done
