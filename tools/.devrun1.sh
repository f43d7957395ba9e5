set -x
R=$PWD/build-gpu; export LD_LIBRARY_PATH=$R; export MARLINRT_CACHE=/tmp/s/c.db; mkdir -p /tmp/s
nvidia-smi --query-gpu=name --format=csv,noheader > $OUT/gpu.txt
(time $R/tests/test_gemm gpu) > $OUT/test_gemm.log 2>&1; echo "test_gemm rc=$?" >> $OUT/test_gemm.log
for c in t256.m8.n8.k4.s4.g8 t256.m8.n16.k4.s4.g8 t256.m16.n8.k4.s3.g8 t256.m8.n8.k8.s4.g8; do
  echo "== $c"; $R/marlinrt bench --shape 8192x8192,8192x57344,28672x8192,4096x28672 --m 256,512,1024 --group 128 --config $c 2>&1
done > $OUT/bench.txt
echo "== auto" >> $OUT/bench.txt; $R/marlinrt bench --shape 8192x8192,8192x57344,28672x8192,4096x28672 --m 128,256,512,1024 --group 128 >> $OUT/bench.txt 2>&1
tail -5 $OUT/test_gemm.log
