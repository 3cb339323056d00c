#!/usr/bin/env bash
# The whole GPU check in one device call: install, GPU tests, examples compiled, sanitizer,
# benchmarks. Logs go to $OUT (or ./gpu_logs).
# Usage: bash scripts/gpu_check.sh [tests|sharded|hopper|examples|sanitize|sanitize-padded|bench|bench-<section>|bench-persistence|bench-thread-store|profile-attention|profile-attention-bwd|stalls-attention|
#                                    profile-train|attention-tiles|attention-tiles-fwd|
#                                    attention-overlap|attention-order|attention-persistent|attention-pingpong|warp-specialized|
#                                    ops-bench|ragged-bench|train|train-ablate|trace-train|unverified|train-dp]...
# One device call holds at most 10 minutes: tests+examples+sanitize fit one call, bench
# another, ops-bench and ragged-bench one each, train one; train-dp runs on nvidia-h200-x2.
# (default: tests examples sanitize bench)
set -uo pipefail
out="${OUT:-gpu_logs}"
mkdir -p "$out"
export PYTHONUNBUFFERED=1
# The GPU machine has no platformdirs (the default cache location): name the cache directory.
export JTILE_CACHE_DIR="${JTILE_CACHE_DIR:-/tmp/jtile_cache}"
parts=("${@:-tests examples sanitize bench}")
parts=(${parts[*]})

nvidia-smi --query-gpu=name,driver_version,clocks.sm,memory.used --format=csv > "$out/gpu.txt" 2>&1
if ! python3 -m pip install --no-build-isolation --no-deps -e . > "$out/install.log" 2>&1; then
  tail -40 "$out/install.log"; exit 1
fi
status=0
for part in "${parts[@]}"; do
  case "$part" in
    tests)
      timeout 420 python3 -m pytest -q -m gpu -p no:cacheprovider tests 2>&1 | tee "$out/gpu_tests.log" | tail -25
      status=$((status | ${PIPESTATUS[0]})) ;;
    sharded)
      # The GPU tests are dominated by NVRTC compiles: run eight groups side by side on the
      # machine's cores. Each process allocates GPU memory on demand so they can share the GPU.
      # tests/ops took over 6 minutes as one group beside the others: it is split in two.
      # tests/language runs whole (not only `gpu`-marked tests): its run_both_ways compares
      # every kernel compiled against interpret mode whenever a GPU is present. The shard_map
      # tests join it: they run on host devices, and this machine has the newer jax.
      groups=("tests/gpu/test_hopper_gpu.py" "tests/gpu/test_examples_gpu.py" "tests/tilelang"
              "tests/ops/test_ops_gpu.py"
              "tests/ops --ignore=tests/ops/test_ops_gpu.py" "tests/differential tests/autotune"
              "tests/gpu --ignore=tests/gpu/test_hopper_gpu.py --ignore=tests/gpu/test_examples_gpu.py"
              "tests/trace tests/binding"
              "ALL tests/language tests/binding/test_shard_map_vma.py tests/ops/test_ops_shard_map.py")
      pids=()
      for i in "${!groups[@]}"; do
        marker=(-m gpu); paths=${groups[$i]}
        if [[ $paths == ALL\ * ]]; then marker=(); paths=${paths#ALL }; fi
        XLA_PYTHON_CLIENT_PREALLOCATE=false timeout 480 python3 -m pytest -q "${marker[@]}" \
          -p no:cacheprovider $paths > "$out/gpu_tests_$i.log" 2>&1 &
        pids+=($!)
      done
      for i in "${!pids[@]}"; do
        wait "${pids[$i]}"; rc=$?
        echo "== group $i (${groups[$i]}): exit $rc"; tail -3 "$out/gpu_tests_$i.log"
        grep -E "^(FAILED|ERROR)" "$out/gpu_tests_$i.log" | head -20
        status=$((status | rc))
      done > "$out/gpu_tests.log" 2>&1
      # One file for the groups' full logs: a device call brings back only a few files.
      for i in "${!groups[@]}"; do
        echo "==== group $i (${groups[$i]})"; cat "$out/gpu_tests_$i.log"; rm "$out/gpu_tests_$i.log"
      done > "$out/gpu_tests_groups.log"
      cat "$out/gpu_tests.log" ;;
    hopper)
      timeout 300 python3 -m pytest -q -m gpu -p no:cacheprovider --maxfail=8 \
        tests/gpu/test_hopper_gpu.py 2>&1 \
        | tee "$out/hopper_tests.log" | tail -25
      status=$((status | ${PIPESTATUS[0]})) ;;
    examples)
      for example in quickstart softmax layer_norm gemm reducer producer_consumer flash_attention moe; do
        echo "== examples/$example.py"
        python3 "examples/$example.py" 2>&1 | tail -8
        status=$((status | ${PIPESTATUS[0]}))
      done 2>&1 | tee "$out/examples.log" ;;
    sanitize)
      for tool in memcheck racecheck synccheck; do
        echo "== compute-sanitizer --tool $tool"
        timeout 200 compute-sanitizer --tool "$tool" --error-exitcode 3 --target-processes all \
          python3 scripts/sanitize_kernels.py 2>&1 | grep -v "^========= Program hit" | tail -12
        status=$((status | ${PIPESTATUS[0]}))
      done 2>&1 | tee "$out/sanitizer.log" ;;
    sanitize-padded)
      # Kernels whose fragments hold padding (GEMM tiles and head dims not powers of 2).
      for tool in memcheck racecheck synccheck; do
        echo "== compute-sanitizer --tool $tool (padded)"
        timeout 200 compute-sanitizer --tool "$tool" --error-exitcode 3 --target-processes all \
          python3 scripts/sanitize_kernels.py padded 2>&1 | grep -v "^========= Program hit" | tail -12
        status=$((status | ${PIPESTATUS[0]}))
      done 2>&1 | tee "$out/sanitizer_padded.log" ;;
    bench)
      python3 benchmarks/bench.py 2>&1 | tee "$out/bench.log" | tail -40 ;;
    ops-bench)
      # About 8 minutes on an H200 for every section (each op compiled and timed in two dtypes,
      # three rows each); OPS_SECTIONS="norms softmaxes" (see bench_ops.py) times only some.
      timeout 540 python3 benchmarks/bench_ops.py ${OPS_SECTIONS:-} 2>&1 | tee "$out/bench_ops.log" | tail -40 ;;
    ragged-bench)
      timeout "${RAGGED_SECONDS:-540}" python3 benchmarks/bench_ragged_dot.py 2>&1 | tee "$out/bench_ragged_dot.log" \
        | tail -20 ;;
    train)
      # One GPU: the jtile model beside jax.numpy + cuDNN, loss curves to a PNG.
      timeout 300 python3 examples/train_gpt.py --plot "$out/train_loss.png" \
        --losses-json "$out/train_losses.json" 2>&1 | tee "$out/train.log" | tail -25
      status=$((status | ${PIPESTATUS[0]})) ;;
    unverified)
      # What the last round checked on the CPU only: T.set_max_nreg in T.ws regions,
      # TileLang's register hints on jtile's own warp roles, the warp-specialised attention
      # forward and TVM's cross-thread reduction, compiled against float64.
      XLA_PYTHON_CLIENT_PREALLOCATE=false timeout 300 python3 -m pytest -q -p no:cacheprovider \
        -m gpu tests/tilelang/test_warp_specialized.py tests/passes/test_no_set_max_nreg.py \
        tests/language/test_thread_allreduce.py tests/tilelang/test_misc.py -k "not cumsum" \
        2>&1 | tee "$out/unverified_tests.log" | tail -5
      status=$((status | ${PIPESTATUS[0]})) ;;
    warp-specialized)
      # Hand-written warp specialisation (T.ws regions, T.tma_copy, the kernel's mbarriers)
      # compiled against float64, then memcheck, racecheck and synccheck on those kernels.
      XLA_PYTHON_CLIENT_PREALLOCATE=false timeout 200 python3 -m pytest -q -p no:cacheprovider \
        -m gpu tests/tilelang/test_warp_specialized.py 2>&1 | tee "$out/ws_gpu_tests.log" | tail -5
      status=$((status | ${PIPESTATUS[0]}))
      for tool in memcheck racecheck synccheck; do
        echo "== compute-sanitizer --tool $tool" | tee -a "$out/ws_sanitizer.log"
        timeout 100 compute-sanitizer --tool "$tool" --error-exitcode 3 --target-processes all \
          python3 scripts/sanitize_kernels.py ws > "$out/ws_tool.log" 2>&1
        status=$((status | $?))
        grep -v "^========= Program hit" "$out/ws_tool.log" | tail -6 | tee -a "$out/ws_sanitizer.log"
      done
      rm -f "$out/ws_tool.log" ;;
    attention-pingpong)
      # The overlapped forward with the consumer warpgroups in turn or not.
      timeout 420 python3 benchmarks/bench_attention_tiles.py --pingpong 2>&1 \
        | tee "$out/bench_attention_pingpong.log" | tail -12 ;;
    train-ablate)
      # The training step with each jtile op in turn taken from the jax.numpy model.
      timeout 420 python3 benchmarks/bench_train.py --ablate 2>&1 \
        | tee "$out/bench_train_ablate.log" | tail -12 ;;
    train-dp)
      # Every local GPU, data parallel, beside the one-GPU run of the jtile model.
      timeout 300 python3 examples/train_gpt.py --data-parallel --steps 100 \
        --plot "$out/train_dp_loss.png" --losses-json "$out/train_dp_losses.json" 2>&1 \
        | tee "$out/train_dp.log" | tail -25
      status=$((status | ${PIPESTATUS[0]})) ;;
    bench-persistence)
      # The Hopper GEMM one block per tile against the same kernel as a persistent tile loop,
      # beside XLA, timed in interleaved rounds.
      timeout 400 python3 benchmarks/bench_gemm_persistence.py 2>&1 \
        | tee "$out/bench_gemm_persistence.log" | tail -14 ;;
    bench-thread-store)
      # The GEMM and attention sections with the epilogues written by the threads
      # (JTILE_TMA_STORE=0) instead of TMA stores: run right after `bench` to compare.
      JTILE_TMA_STORE=0 timeout 400 python3 benchmarks/bench.py gemms attention 2>&1 \
        | tee "$out/bench_thread_store.log" | tail -30 ;;
    attention-tiles)
      # jtile.ops.attention forward + backward under each candidate backward tile shape.
      timeout 240 python3 benchmarks/bench_attention_tiles.py 2>&1 \
        | tee "$out/bench_attention_tiles.log" | tail -20 ;;
    attention-tiles-fwd)
      # jtile.ops.attention's forward under each candidate forward tile shape, beside cuDNN.
      timeout 300 python3 benchmarks/bench_attention_tiles.py --forward 2>&1 \
        | tee "$out/bench_attention_tiles_fwd.log" | tail -40 ;;
    attention-overlap)
      # jtile.ops.attention's forward with and without the P V overlap, alternating.
      timeout 420 python3 benchmarks/bench_attention_tiles.py --overlap 2>&1 \
        | tee "$out/bench_attention_overlap.log" | tail -20 ;;
    attention-persistent)
      # jtile.ops.attention's non-causal forward with and without persistent tile loops.
      timeout 420 python3 benchmarks/bench_attention_tiles.py --persistent 2>&1 \
        | tee "$out/bench_attention_persistent.log" | tail -20 ;;
    attention-order)
      # Causal jtile.ops.attention (forward, forward + backward) under each launch order.
      timeout 420 python3 benchmarks/bench_attention_tiles.py --order 2>&1 \
        | tee "$out/bench_attention_order.log" | tail -20 ;;
    profile-attention-bwd)
      # Nsight Compute on the attention backward kernels (jtile.ops.attention's gradient).
      timeout 400 ncu --set full -k regex:attention_bwd_d[0-9] python3 scripts/profile_attention.py \
        backward > "$out/ncu_attention_bwd.txt" 2>&1
      grep -E "attention_bwd|Duration|Compute \(SM\) Throughput|Memory Throughput|Issue Slots Busy|Executed Ipc Active|Warp Cycles Per Issued|Registers Per|Achieved Occupancy|Stall|One or More" "$out/ncu_attention_bwd.txt" | head -120 ;;
    profile-attention)
      # Nsight Compute on the attention forward kernels: what limits them.
      timeout 400 ncu --set full -k regex:flash_fwd python3 scripts/profile_attention.py \
        > "$out/ncu_attention.txt" 2>&1
      grep -E "flash_fwd|Duration|Compute \(SM\) Throughput|Memory Throughput|Issue Slots Busy|Executed Ipc Active|Warp Cycles Per Issued|Registers Per|Achieved Occupancy|Stall|One or More" "$out/ncu_attention.txt" | head -120 ;;
    stalls-attention)
      # Where the attention forward's warps wait, per SASS instruction (Nsight Compute's
      # source page with sampled stall reasons), for one kernel: STALLS_KERNEL, default D64 full.
      kernel="${STALLS_KERNEL:-flash_fwd_d64}"
      timeout 300 ncu --set full --import-source yes -k "regex:^${kernel}\$" --launch-count 1 \
        -o "$out/stalls" -f python3 scripts/profile_attention.py > "$out/stalls_run.log" 2>&1
      tail -3 "$out/stalls_run.log"
      ncu -i "$out/stalls.ncu-rep" --page source --csv --print-source sass \
        > "$out/stalls_sass.csv" 2> "$out/stalls_sass.err"
      tail -3 "$out/stalls_sass.err"; wc -l "$out/stalls_sass.csv" ;;
    trace-train)
      # Per-kernel GPU time of a training step (jax.profiler, CUPTI), jtile beside jnp+cuDNN.
      timeout 300 python3 scripts/profile_train_step.py --trace /tmp/step_trace 2>&1 \
        | tee "$out/trace_train.log" | tail -100 ;;
    profile-train)
      # Per-kernel GPU time of one training step, jtile model and jax.numpy + cuDNN model.
      # XLA's command buffers (CUDA graphs) are off so that each kernel launch is seen.
      # On the H200 machine the profiled process has segfaulted and left GPU memory held:
      # run this part alone, last in a call.
      for model in jtile jnp; do
        XLA_FLAGS="--xla_gpu_enable_command_buffer=" timeout 200 ncu --profile-from-start off \
          --metrics gpu__time_duration.sum --csv \
          python3 scripts/profile_train_step.py --model "$model" > "$out/step_$model.csv" \
          2>> "$out/step_err.log" || tail -15 "$out/step_err.log"
      done
      python3 scripts/profile_train_step.py --summarise "$out/step_jtile.csv" \
        "$out/step_jnp.csv" 2>&1 | tee "$out/profile_train.log" ;;
    bench-*)
      timeout 300 python3 benchmarks/bench.py "${part#bench-}" 2>&1 | tee -a "$out/bench.log" | tail -30 ;;
  esac
done
exit $status
