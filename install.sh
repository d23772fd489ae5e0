#!/usr/bin/env bash
# Set up sdrest in a virtualenv and build the stable-diffusion.cpp binding for this machine's hardware.
#
#   ./install.sh                    CPU build into ./.venv
#   ./install.sh --dev              ... plus the test and lint tools
#   ./install.sh --backend cuda     GPU build: cuda | vulkan | rocm | metal | sycl | cpu (default)
#   ./install.sh --venv DIR         put the virtualenv elsewhere
#   CMAKE_ARGS="..." ./install.sh   any stable-diffusion.cpp cmake options, used as given
set -euo pipefail
cd "$(dirname "$0")"

venv=.venv
backend=cpu
extras=""
while [ $# -gt 0 ]; do
    case "$1" in
        --dev) extras="[test]" ;;
        --backend) backend="$2"; shift ;;
        --venv) venv="$2"; shift ;;
        -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
        *) echo "install.sh: unknown option $1" >&2; exit 2 ;;
    esac
    shift
done

case "$backend" in
    # ggml's tinyBLAS matrix kernels: measured 28 s -> 18 s per SD1 256x256 image on a 2-core x86 CPU (off by default).
    cpu) default_args="-DGGML_LLAMAFILE=ON" ;;
    cuda) default_args="-DSD_CUDA=ON" ;;
    vulkan) default_args="-DSD_VULKAN=ON" ;;
    metal) default_args="-DSD_METAL=ON" ;;
    sycl) default_args="-DSD_SYCL=ON -DCMAKE_C_COMPILER=icx -DCMAKE_CXX_COMPILER=icpx" ;;
    rocm)
        gfx=$(/opt/rocm/bin/rocminfo 2>/dev/null | grep -o -m1 'gfx[0-9a-f]*' || true)
        default_args="-G Ninja -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ -DSD_HIPBLAS=ON -DCMAKE_BUILD_TYPE=Release -DGPU_TARGETS=$gfx -DAMDGPU_TARGETS=$gfx"
        ;;
    *) echo "install.sh: unknown backend $backend (cpu, cuda, vulkan, rocm, metal, sycl)" >&2; exit 2 ;;
esac
cmake_args="${CMAKE_ARGS:-$default_args}"

missing=()
python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null || missing+=("python3 (3.11 or newer)")
python3 -c 'import venv, ensurepip' 2>/dev/null || missing+=("python3-venv")
command -v g++ >/dev/null || command -v c++ >/dev/null || missing+=("a C++ compiler (build-essential)")
if [ ${#missing[@]} -gt 0 ]; then
    echo "install.sh: missing ${missing[*]}." >&2
    echo "On Debian/Ubuntu: sudo apt install python3 python3-venv python3-dev build-essential cmake" >&2
    exit 1
fi

[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --upgrade pip
pip_args=()
if [ "$cmake_args" != "-DGGML_LLAMAFILE=ON" ]; then
    # pip's wheel cache ignores CMAKE_ARGS: a cached CPU wheel would silently stand in for a GPU build.
    pip_args=(--no-cache-dir --force-reinstall --no-deps)
    echo "Building stable-diffusion-cpp-python with CMAKE_ARGS=\"$cmake_args\" (several minutes)..."
    CMAKE_ARGS="$cmake_args" "$venv/bin/python" -m pip install "${pip_args[@]}" "stable-diffusion-cpp-python==0.4.7"
fi
echo "Installing sdrest${extras} (the first build of stable-diffusion-cpp-python takes a few minutes)..."
CMAKE_ARGS="$cmake_args" "$venv/bin/python" -m pip install --quiet -e ".$extras"
"$venv/bin/sdrest" version
