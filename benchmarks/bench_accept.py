"""Offline decoder speed vs transformers' assisted generation (not a test: figures go in the README).

    python benchmarks/bench_accept.py [--json]

Same random-weight target (profiles/models/tiny-qwen3.json, 6 layers x 256), same prompts, greedy,
128 new tokens each, CPU, 1 thread. transformers: `generate(assistant_model=...)` with a 1-layer
Qwen3 of the same width as the assistant. dsbench: SpecDecoder with a 1-layer Eagle3 drafter
(the same size) and with a 1-layer DFlash block drafter, collecting per-round statistics. Random
weights mean little is accepted on either side, so this measures per-round machinery. Also: the
DSpark scheduler's cost per round at R = 1 inside the engine.
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
from dsbench.spec.drafters import BlockDrafter, Eagle3Drafter
from dsbench.spec.engine import SpecDecoder

PROMPTS = [[5, 17, 99, 3, 250, 1024, 7], [11, 12, 13, 14], [400, 401, 77, 2, 9, 31, 8, 100], [1, 2, 3]]
NEW = 128


def tok_s(run) -> float:
    t0 = time.perf_counter()
    n = sum(run(p) for p in PROMPTS)
    return n / (time.perf_counter() - t0)


def main() -> None:
    torch.set_num_threads(1)
    cfg = load_hf_config("tiny-qwen3")
    target = build_model(cfg, cfg.num_hidden_layers, "cpu", torch.float32)
    assistant = build_model(cfg, 1, "cpu", torch.float32)  # same width, one layer
    # a fixed 5-token draft per round, as dsbench verifies (transformers would otherwise shrink it on rejections)
    assistant.generation_config.num_assistant_tokens = 5
    assistant.generation_config.num_assistant_tokens_schedule = "constant"
    assistant.generation_config.assistant_confidence_threshold = 0.0
    ids = [0, 1, 2, 3, 4]

    def hf_plain(p):
        with torch.inference_mode():
            out = target.generate(torch.tensor([p]), max_new_tokens=NEW, min_new_tokens=NEW, do_sample=False, pad_token_id=0)
        return out.shape[1] - len(p)

    def hf_assisted(p):
        with torch.inference_mode():
            out = target.generate(torch.tensor([p]), assistant_model=assistant, max_new_tokens=NEW, min_new_tokens=NEW,
                                  do_sample=False, pad_token_id=0)
        return out.shape[1] - len(p)

    def ours(drafter):
        dec = SpecDecoder(target, drafter, ids, gamma=5, temperature=0.0)
        return lambda p: len(dec.generate(p, NEW)[0])

    torch.manual_seed(2)
    eagle = Eagle3Drafter(cfg).eval()
    dflash = BlockDrafter(cfg, draft_layers=1).eval()
    for f in (hf_plain, hf_assisted, ours(eagle), ours(dflash)):  # warm-up
        f(PROMPTS[0])
    runs = {"transformers greedy (no drafter)": hf_plain, "transformers assisted (1-layer assistant)": hf_assisted,
            "dsbench Eagle3 (1 layer), per-round stats": ours(eagle), "dsbench DFlash (1 layer), per-round stats": ours(dflash)}
    res = {name: statistics.median(tok_s(f) for _ in range(3)) for name, f in runs.items()}
    conf = np.full((1, 1, 7), 0.8)
    table = np.linspace(0.01, 0.012, 16)
    n = 20_000
    t0 = time.perf_counter()
    for _ in range(n):
        schedule(Policy("dspark"), conf, table)
    sched_us = (time.perf_counter() - t0) / n * 1e6
    out = {"tok_s": res, "scheduler_us_per_round_R1_gamma7": sched_us}
    if "--json" in sys.argv:
        print(json.dumps(out, indent=1))
        return
    base = res["transformers assisted (1-layer assistant)"]
    for name, v in res.items():
        print(f"{name:<45} {v:8.1f} tok/s  ({v / base:.2f}x assisted)")
    print(f"DSpark scheduler inside the engine (R = 1, gamma = 7): {sched_us:.1f} us per round")


if __name__ == "__main__":
    main()
