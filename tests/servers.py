"""Real servers on 127.0.0.1 for the tests: dsbench's own `serve --sim` and `transformers serve`."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(condition, timeout_s: float = 60.0, what: str = "condition") -> None:
    """Poll `condition()` until it holds: tests wait for an event, never for a fixed time."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout_s} s")
        time.sleep(0.02)


def wait_healthy(url: str, proc: subprocess.Popen, timeout_s: float = 60.0, log=None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = Path(log.name).read_text()[-2000:] if log is not None else proc.stderr.read().decode()[-2000:]
            raise RuntimeError(f"server exited with {proc.returncode}: {tail}")
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"server at {url} not healthy after {timeout_s} s")


@contextlib.contextmanager
def _server(cmd: list[str], timeout_s: float, env: dict | None = None, stderr=None):
    """Start a server command bound to a free loopback port (`{port}` in `cmd`); yields (url, process).
    `stderr`: an open file for the server's whole output (chatty servers would fill a pipe)."""
    port = free_port()
    out = stderr if stderr is not None else subprocess.PIPE
    # its own process group: engines that fork workers (vLLM) go down with it
    proc = subprocess.Popen(
        [c.replace("{port}", str(port)) for c in cmd], stdout=out, stderr=out, env=env, start_new_session=True
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, proc, timeout_s, stderr)
        yield url, proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def sim_server(*args: str):
    """`dsbench serve --sim ARGS` on a free loopback port; yields (base_url, process)."""
    return _server([sys.executable, "-m", "dsbench.cli", "serve", "--sim", "--port", "{port}", *args], 30)


def transformers_server(model_dir: Path):
    """`transformers serve MODEL` (a third-party OpenAI-compatible server) on CPU, offline."""
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HF_HOME": str(model_dir.parent / "hf-home"),
    }
    # transformers serve 5.10 answers /v1/models by scanning the hub cache, and fails if it is absent
    (model_dir.parent / "hf-home" / "hub").mkdir(parents=True, exist_ok=True)
    exe = Path(sys.executable).parent / "transformers"  # the CLI installed beside this interpreter
    cmd = [
        str(exe) if exe.exists() else "transformers",
        "serve",
        str(model_dir),
        "--port",
        "{port}",
        "--device",
        "cpu",
        "--host",
        "127.0.0.1",
    ]
    return _server(cmd, 120, env)


def build_tiny_qwen3(out: Path, hidden: int = 64, head_dim: int = 16, layers: int = 2, seed: int = 0) -> Path:
    """A tiny Qwen3-architecture model with its own BPE tokenizer trained on the project's
    workloads (random weights, sampling on), saved as safetensors. No download. vLLM's CPU
    build needs head_dim >= 32; two models with the same tokenizer and other seeds make a
    target/drafter pair."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GenerationConfig, PreTrainedTokenizerFast, Qwen3Config, Qwen3ForCausalLM

    texts = [
        json.loads(line)["prompt"]
        for name in ("math", "code", "chat")
        for line in (REPO / "workloads" / f"{name}.jsonl").read_text().splitlines()
        if line.strip()
    ]
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(
        texts,
        trainers.BpeTrainer(
            vocab_size=300,
            special_tokens=["<unk>", "<|endoftext|>", "<|im_start|>", "<|im_end|>"],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        ),
    )
    t = PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="<unk>", eos_token="<|im_end|>", pad_token="<|endoftext|>"
    )
    t.chat_template = (
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )
    t.save_pretrained(out)
    cfg = Qwen3Config(
        vocab_size=len(t),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=head_dim,
        max_position_embeddings=512,
        eos_token_id=t.eos_token_id,
        pad_token_id=t.pad_token_id,
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    Qwen3ForCausalLM(cfg).save_pretrained(out)
    GenerationConfig(
        do_sample=True, temperature=1.0, top_k=0, top_p=1.0, eos_token_id=t.eos_token_id, pad_token_id=t.pad_token_id
    ).save_pretrained(out)
    return out
