#!/usr/bin/env bash
# One device run (NVIDIA GPU machine, no network): build the CUDA binding, write the fixtures, benchmark the options.
#
#   bash bench/gpu_check.sh        # in the repository root; env: OUT (results folder), TOTAL (seconds for it all)
#
# Needs .gpu/sdist/stable_diffusion_cpp_python-0.4.7.tar.gz and optionally wheels in .gpu/whl (see
# bench/results/nvidia-h200.md). Everything it reports goes to $OUT: check.log, build.log, nvidia-smi.txt and the
# benchmark's options.{md,json,log}. The benchmark gets whatever is left of TOTAL after the build. Optional env:
# CONFIGS (comma list), BIG_RUNS (timed 1024² runs, default 1), RESERVE (seconds, default 30), BUILD=0 (no build).
set -u
START=$(date +%s)
OUT=${OUT:-/tmp/gpu-check}
TOTAL=${TOTAL:-535}
mkdir -p "$OUT"
exec > >(tee "$OUT/check.log") 2>&1
export PYTHONUNBUFFERED=1 SDREST_FIXTURES=/tmp/sdrest-fixtures
since() { echo $(( $(date +%s) - START )); }

echo "== machine ($(date -u +%FT%TZ))"
nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1; cat "$OUT/nvidia-smi.txt"
CAP=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -1)
echo "compute_cap: $CAP"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
nvcc --version | tail -2; python3 --version; nproc
python3 -m pip list 2>/dev/null | grep -i -E '^(numpy|pillow|typing.extensions|scikit-build-core|cmake|ninja|nvidia-ml-py) '

echo "== wheels"
if compgen -G ".gpu/whl/*.whl" > /dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .gpu/whl/*.whl || exit 1
fi
export PYTHONPATH=/tmp/site:$PWD

echo "== fixtures (background) and build"
python3 -c "from tests.fixtures import real; print(real.build('sd1-full')); print(real.build('taesd'))" \
  > /tmp/fixtures.txt 2>&1 &
FIXTURES=$!
ARCH=${CAP/./}
ARCH=${ARCH:-90}
BUILD_START=$(date +%s)
if [ "${BUILD:-1}" = 1 ]; then  # BUILD=0: use the binding already importable (a dry run on a CPU machine)
  CMAKE_ARGS="-DSD_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=$ARCH" CMAKE_BUILD_PARALLEL_LEVEL=16 \
    python3 -m pip install -v --no-deps --no-build-isolation --no-index --target /tmp/site .gpu/sdist/*.tar.gz \
    > "$OUT/build.log" 2>&1
fi
BUILD_RC=$?
echo "build: rc=$BUILD_RC, $(( $(date +%s) - BUILD_START )) s, CMAKE_CUDA_ARCHITECTURES=$ARCH"
if [ $BUILD_RC -ne 0 ]; then tail -40 "$OUT/build.log"; exit 1; fi
wait $FIXTURES; echo "fixtures: rc=$? at $(since) s"; cat /tmp/fixtures.txt
MODEL=$(sed -n 1p /tmp/fixtures.txt); TAESD=$(sed -n 2p /tmp/fixtures.txt)
ls -la "$MODEL" "$TAESD" || exit 1
python3 -c "import stable_diffusion_cpp as s; print(s.__file__, s.__version__)" || exit 1
ls /tmp/site/stable_diffusion_cpp/lib 2>/dev/null

BUDGET=$(( TOTAL - $(since) ))
echo "== options benchmark, budget $BUDGET s (at $(since) s)"
python3 bench/gpu_options.py "$MODEL" --taesd "$TAESD" --size 512 --steps 20 --runs 3 \
  --big-size 1024 --big-runs "${BIG_RUNS:-1}" --budget "$BUDGET" --reserve "${RESERVE:-30}" --out "$OUT" \
  ${CONFIGS:+--configs "$CONFIGS"}
echo "== done at $(since) s"
