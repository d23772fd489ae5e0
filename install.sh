#!/usr/bin/env bash
# Set up sdrest in a virtualenv and build the stable-diffusion.cpp binding for this machine's hardware.
#
#   ./install.sh                    CPU build into ./.venv
#   ./install.sh --dev              ... plus the test and lint tools
#   ./install.sh --backend cuda     GPU build: cuda | vulkan | rocm | metal | sycl | cpu (default)
#   ./install.sh --venv DIR         put the virtualenv elsewhere
#   sudo ./install.sh --system      a system service (see README "Run as a service"; systemd/install-system.sh)
#   CMAKE_ARGS="..." ./install.sh   any stable-diffusion.cpp cmake options, used as given
set -euo pipefail
cd "$(dirname "$0")"

venv=.venv
backend=cpu
extras=""
editable=(-e)
quiet=no
for arg in "$@"; do
    if [ "$arg" = --system ]; then
        args=()
        for a in "$@"; do [ "$a" != --system ] && args+=("$a"); done
        exec ./systemd/install-system.sh "${args[@]}"
    fi
done
while [ $# -gt 0 ]; do
    case "$1" in
        --dev) extras="[test]" ;;
        --backend) backend="$2"; shift ;;
        --venv) venv="$2"; shift ;;
        --no-editable) editable=() ;;
        --quiet) quiet=yes ;;
        -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
        *) echo "install.sh: unknown option $1" >&2; exit 2 ;;
    esac
    shift
done

case "$backend" in
    # ggml's tinyBLAS matrix kernels: measured 28 s -> 18 s per SD1 256x256 image on a 2-core x86 CPU (off by default).
    cpu) default_args="-DGGML_LLAMAFILE=ON"; wants="tinyblas" ;;
    cuda)
        # Only the installed GPU's architecture (nvidia-smi's compute capability, 9.0 -> 90): every architecture
        # would take several times as long to build.
        cap=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 | tr -d '. ' || true)
        default_args="-DSD_CUDA=ON${cap:+ -DCMAKE_CUDA_ARCHITECTURES=$cap}"; wants="CUDA" ;;
    vulkan) default_args="-DSD_VULKAN=ON"; wants="Vulkan" ;;
    metal) default_args="-DSD_METAL=ON"; wants="Metal" ;;
    sycl) default_args="-DSD_SYCL=ON -DCMAKE_C_COMPILER=icx -DCMAKE_CXX_COMPILER=icpx"; wants="SYCL" ;;
    rocm)
        gfx=$(/opt/rocm/bin/rocminfo 2>/dev/null | grep -o -m1 'gfx[0-9a-f]*' || true)
        default_args="-G Ninja -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ -DSD_HIPBLAS=ON -DCMAKE_BUILD_TYPE=Release -DGPU_TARGETS=$gfx -DAMDGPU_TARGETS=$gfx"
        wants="ROCm"
        ;;
    *) echo "install.sh: unknown backend $backend (cpu, cuda, vulkan, rocm, metal, sycl)" >&2; exit 2 ;;
esac
cmake_args="${CMAKE_ARGS:-$default_args}"
export CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc 2>/dev/null || echo 2)}"

missing=()
python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null || missing+=("python3 (3.11 or newer)")
python3 -c 'import venv, ensurepip' 2>/dev/null || missing+=("python3-venv")
command -v g++ >/dev/null || command -v c++ >/dev/null || missing+=("a C++ compiler (build-essential)")
if [ ${#missing[@]} -gt 0 ]; then
    echo "install.sh: missing ${missing[*]}." >&2
    echo "On Debian/Ubuntu: sudo apt install python3 python3-venv python3-dev build-essential cmake" >&2
    exit 1
fi

say() { [ "$quiet" = yes ] || echo "$@"; }
binding="stable-diffusion-cpp-python==0.4.7"
build_binding() {
    # pip's wheel cache ignores CMAKE_ARGS: a cached build for other hardware would silently stand in.
    echo "Building stable-diffusion-cpp-python with CMAKE_ARGS=\"$cmake_args\" (several minutes)..."
    CMAKE_ARGS="$cmake_args" "$venv/bin/python" -m pip install --quiet --no-cache-dir --force-reinstall --no-deps "$binding"
}

[ -x "$venv/bin/python" ] || "${PYTHON:-python3}" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --upgrade pip
if [ "$cmake_args" != "-DGGML_LLAMAFILE=ON" ]; then
    build_binding
fi
say "Installing sdrest${extras} (the first build of stable-diffusion-cpp-python takes a few minutes)..."
log=$(mktemp)
# setuptools' editable-install warnings are noise to a person reading the output: keep pip's real messages.
if ! CMAKE_ARGS="$cmake_args" "$venv/bin/python" -m pip install --quiet "${editable[@]}" ".$extras" >"$log" 2>&1; then
    cat "$log" >&2
    rm -f "$log"
    exit 1
fi
grep -v -e 'BuildBackendWarning' -e '^ *!!' -e '^ *\*\*\*' -e 'Please be careful' -e 'name as your package' \
    -e 'with strategy, WheelFile' -e '^ *$' -e "^WARNING: Location '" "$log" || true
rm -f "$log"

# Check that the engine is the one asked for; a stock wheel from pip's cache is rebuilt.
built=$("$venv/bin/sdrest" version --json)
has() { "$venv/bin/python" -c "import json,sys; i=json.loads(sys.argv[1]); sys.exit(0 if ('$1' == 'tinyblas' and i.get('tinyblas')) or '$1' in i.get('backends', []) else 1)" "$built"; }
if [ -z "${CMAKE_ARGS:-}" ] && ! has "$wants"; then
    echo "The installed engine lacks $wants (a build from pip's cache?); rebuilding it."
    build_binding
fi
[ "$quiet" = yes ] || "$venv/bin/sdrest" version
