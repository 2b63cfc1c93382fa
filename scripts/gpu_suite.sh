#!/usr/bin/env bash
# Step time of SGD, SAM, optax.contrib.sam, SSAM and the cheaper ascents on a
# GPU, in one command of at most ten minutes (most of it compilation; the limits
# below bound each part):
#
#   OUT=benchmarks/results bash scripts/gpu_suite.sh
#
# Writes $OUT/gpu_step_time.json (benchmarks.step_time: every row a ratio to
# SGD timed in the same process, repetitions interleaved; the small CNN at
# Fashion-MNIST's shape and ResNet-18 at CIFAR's, batch 128),
# $OUT/gpu_control_flow.json (the empirical Fisher unrolled vs in a loop,
# which decides experiments.optimizers.fisher_unroll off CPU) and, last,
# $OUT/gpu_ascent_step_time.json (ResNet-18 with the cheaper ascents of
# docs/efficient.md, dense and with SSAM-F at 50 %). Each command runs under
# its own time limit, so a slow compile costs one model, not the suite.
# Needs only jax, flax and optax (no TensorFlow).
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:?set OUT to the folder for the results}"
mkdir -p "$out"
python="${PYTHON:-python3}"
export PYTHONUNBUFFERED=1
# Each row compiles its step twice (timed call, cost analysis): the persistent
# cache makes the second a lookup.
export JAX_COMPILATION_CACHE_DIR="${JAX_COMPILATION_CACHE_DIR:-/tmp/ssam_jax_cache}"
export JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=0
limit() { timeout "$1" "${@:2}" || echo "exit $? (limit ${1}s): ${*:2}"; }

nvidia-smi -L 2>/dev/null || true
"$python" -c "import jax, flax, optax; print(jax.devices(), jax.__version__, flax.__version__, optax.__version__)"

step_time=("$python" -m benchmarks.step_time --out "$out/gpu_step_time.json")
limit 100 "${step_time[@]}" --models small_cnn --batch 128 --repetitions 100 \
  --exclude "2:4"
limit 270 "${step_time[@]}" --models resnet18 --batch 128 --repetitions 50 \
  --exclude "ssam-D tensorwise,ssam-D unstructured s=0.9,ssam-D unstructured s=0.99,2:4,lax.cond,tensorwise s=0.5,tensorwise s=0.99"
limit 30 "$python" -m benchmarks.control_flow --repetitions 100 \
  --out "$out/gpu_control_flow.json"
limit 200 "$python" -m benchmarks.step_time --ascents --models resnet18 \
  --batch 128 --repetitions 20 --out "$out/gpu_ascent_step_time.json"
