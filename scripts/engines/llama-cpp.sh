#!/usr/bin/env bash
# Builds llama.cpp's `llama-server` (CPU only) from the source tree that ships inside PyPI's
# llama-cpp-python sdist, into a cache outside the checkout keyed by version, and prints the
# cache folder. A second call finds the build and returns in a second.
#
#   scripts/engines/llama-cpp.sh            -> $DSBENCH_ENGINES/llama.cpp-0.3.36
#   LLAMA_CPP_PYTHON_VERSION=0.3.35 scripts/engines/llama-cpp.sh
#
# The folder holds bin/llama-server, convert_hf_to_gguf.py and gguf-py (for converting tiny
# Hugging Face models to GGUF). About 16 minutes on two cores the first time.
set -euo pipefail
version=${LLAMA_CPP_PYTHON_VERSION:-0.3.36}
root=${DSBENCH_ENGINES:-$HOME/.cache/dsbench/engines}
dest=$root/llama.cpp-$version
if [ -x "$dest/bin/llama-server" ] && [ -f "$dest/convert_hf_to_gguf.py" ]; then
    echo "$dest"; exit 0
fi
mkdir -p "$root"
work=$(mktemp -d "$root/.llama.cpp-build.XXXXXX")
trap 'rm -rf "$work"' EXIT
python3 -m pip download --quiet --no-deps --no-binary :all: "llama-cpp-python==$version" -d "$work" >&2
tar xzf "$work"/llama_cpp_python-"$version".tar.gz -C "$work"
src=$work/llama_cpp_python-$version/vendor/llama.cpp
cmake -S "$src" -B "$work/build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DLLAMA_BUILD_SERVER=ON -DLLAMA_CURL=OFF -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DBUILD_SHARED_LIBS=OFF >&2
cmake --build "$work/build" --target llama-server -j "$(nproc)" >&2
staged=$work/staged
mkdir -p "$staged/bin"
cp "$work/build/bin/llama-server" "$staged/bin/"
cp "$src/convert_hf_to_gguf.py" "$staged/"
cp -r "$src/gguf-py" "$staged/gguf-py"
[ -d "$src/conversion" ] && cp -r "$src/conversion" "$staged/conversion"
rm -rf "$dest"
mv "$staged" "$dest"
echo "$dest"
