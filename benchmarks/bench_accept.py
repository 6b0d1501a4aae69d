"""Offline decoder speed vs transformers' assisted generation (not a test: figures go in the README).

    python benchmarks/bench_accept.py [--json]

Same random-weight target (profiles/models/tiny-qwen3.json, 6 layers x 256), same prompts, greedy,
128 new tokens each, CPU, 1 thread. transformers: `generate(assistant_model=...)` with a 1-layer
Qwen3 of the same width as the assistant. dsbench: SpecDecoder with a 1-layer Eagle3 drafter
(the same size) and with a 1-layer DFlash block drafter, collecting per-round statistics; both
drafters share the target's embedding and head, as checkpoints loaded by dsbench do; the assistant
has weights of its own and an untied head. With random weights nothing is accepted on either side,
so this compares per-round machinery; the table gives tokens per target pass (counted with a
forward hook) to show it, and target passes per second. Also: DFlash decoding 1, 4 and 16
sequences together, and the DSpark scheduler's cost per round at R = 1 inside the engine.
"""

from __future__ import annotations

import json
import statistics
import sys
import time

import numpy as np
import torch

from dsbench.core.policies import Policy, schedule
from dsbench.profile.measure import build_model, load_hf_config
from dsbench.speculative.drafters import drafter_for
from dsbench.speculative.engine import SpecDecoder
from dsbench.speculative.models import BlockModel, Eagle3Model

PROMPTS = [[5, 17, 99, 3, 250, 1024, 7], [11, 12, 13, 14], [400, 401, 77, 2, 9, 31, 8, 100], [1, 2, 3]]
NEW = 128


def tok_s(run) -> float:
    t0 = time.perf_counter()
    n = sum(run(p) for p in PROMPTS)
    return n / (time.perf_counter() - t0)


def tokens_per_pass(target, run) -> float:
    """Generated tokens per target forward (prefill included) over the prompts."""
    calls = [0]
    hook = target.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    n = sum(run(p) for p in PROMPTS)
    hook.remove()
    return n / calls[0]


def main() -> None:
    torch.set_num_threads(1)
    cfg = load_hf_config("tiny-qwen3")
    target = build_model(cfg, cfg.num_hidden_layers, "cpu", torch.float32)
    assistant = build_model(cfg, 1, "cpu", torch.float32)  # same width, one layer
    torch.manual_seed(1)  # its own weights (build_model's seed would share the target's embedding and layer 0)
    with torch.no_grad():
        for w in assistant.parameters():
            if w.dim() == 2:
                w.normal_(0, 0.02)
    # an untied head: a random tied model predicts its input token, as the target often does, which
    # would hand the assistant acceptance by accident
    assistant.lm_head.weight = torch.nn.Parameter(torch.randn_like(assistant.lm_head.weight) * 0.02)
    # a fixed 5-token draft per round, as dsbench verifies (transformers would otherwise shrink it on rejections)
    assistant.generation_config.num_assistant_tokens = 5
    assistant.generation_config.num_assistant_tokens_schedule = "constant"
    assistant.generation_config.assistant_confidence_threshold = 0.0
    ids = [0, 1, 2, 3, 4]

    def hf_plain(p):
        with torch.inference_mode():
            out = target.generate(
                torch.tensor([p]), max_new_tokens=NEW, min_new_tokens=NEW, do_sample=False, pad_token_id=0
            )
        return out.shape[1] - len(p)

    def hf_assisted(p):
        with torch.inference_mode():
            out = target.generate(
                torch.tensor([p]),
                assistant_model=assistant,
                max_new_tokens=NEW,
                min_new_tokens=NEW,
                do_sample=False,
                pad_token_id=0,
            )
        return out.shape[1] - len(p)

    def ours(drafter):
        dec = SpecDecoder(target, drafter_for(drafter, target, ids, 5), temperature=0.0)
        return lambda p: len(dec.generate(p, NEW)[0])

    torch.manual_seed(2)
    eagle = Eagle3Model(cfg).eval()
    dflash = BlockModel(cfg, draft_layers=1).eval()
    for d in (eagle, dflash):  # as the checkpoint loader does: the target's embedding and head
        d.embed_tokens, d.lm_head = target.model.embed_tokens, target.lm_head
    for f in (hf_plain, hf_assisted, ours(eagle), ours(dflash)):  # warm-up
        f(PROMPTS[0])
    runs = {
        "transformers greedy (no drafter)": hf_plain,
        "transformers assisted (1-layer assistant)": hf_assisted,
        "dsbench Eagle3 (1 layer), per-round stats": ours(eagle),
        "dsbench DFlash (1 layer), per-round stats": ours(dflash),
    }
    res = {name: statistics.median(tok_s(f) for _ in range(3)) for name, f in runs.items()}
    per_pass = {name: tokens_per_pass(target, f) for name, f in runs.items()}

    def batched(drafter, rows: int) -> float:
        """Tokens/s of `rows` sequences decoded together (one target pass per round for all)."""
        dec = SpecDecoder(target, drafter_for(drafter, target, ids, 5), temperature=0.0, max_len=512)
        t0 = time.perf_counter()
        sessions = dec.start_many([PROMPTS[i % len(PROMPTS)] for i in range(rows)])
        while any(len(x.tokens) < NEW for x in sessions):
            dec.step_all()
        return sum(len(x.tokens) for x in sessions) / (time.perf_counter() - t0)

    batch_tok_s = {r: statistics.median(batched(dflash, r) for _ in range(3)) for r in (1, 4, 16)}
    conf = np.full((1, 1, 7), 0.8)
    table = np.linspace(0.01, 0.012, 16)
    n = 20_000
    t0 = time.perf_counter()
    for _ in range(n):
        schedule(Policy("dspark"), conf, table)
    sched_us = (time.perf_counter() - t0) / n * 1e6
    out = {
        "tok_s": res,
        "tokens_per_target_pass": per_pass,
        "dflash_batched_tok_s": batch_tok_s,
        "scheduler_us_per_round_R1_gamma7": sched_us,
    }
    if "--json" in sys.argv:
        print(json.dumps(out, indent=1))
        return
    base = res["transformers assisted (1-layer assistant)"]
    for name, v in res.items():
        passes, base_passes = v / per_pass[name], base / per_pass["transformers assisted (1-layer assistant)"]
        print(
            f"{name:<45} {v:7.1f} tok/s ({v / base:.2f}x assisted)  {per_pass[name]:.2f} tokens/pass  "
            f"{passes:6.1f} passes/s ({passes / base_passes:.2f}x)"
        )
    print(
        "DFlash, sequences decoded together: "
        + ", ".join(f"{r} -> {v:.0f} tok/s ({v / batch_tok_s[1]:.2f}x)" for r, v in batch_tok_s.items())
    )
    print(f"DSpark scheduler inside the engine (R = 1, gamma = 7): {sched_us:.1f} us per round")


if __name__ == "__main__":
    main()
