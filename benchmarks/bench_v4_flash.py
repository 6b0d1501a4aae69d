"""A DeepSeek-V4-Flash-like deployment on 8 H800 (DP-attention 8, expert parallel 8, fp8 weights),
DSpark against MTP-1 at 80 and 120 tok/s/user, beside the DSpark paper's production figures
(+51 % and +661 %), and the wall time of a five-method sweep with the gamma search on it. Not a
test: the figures go in the README.

    python benchmarks/bench_v4_flash.py [--json]

The model is `profiles/models/v4-flash-like.json` (DeepSeek-V3's architecture resized to 284B
total / 13B active: an approximation, not the real V4-Flash), the roofline's default knobs, and
the shipped paper-derived Qwen3-8B acceptance curves (the paper gives none for V4): DSpark drafts
gamma = 5 with `dspark-async`, as the paper's DSpark-5. Two traffic models: every request at
context 4096 without prefill, and ISL 2048 / OSL 1024 with chunked prefill.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from dsbench.config import ProfileConfig, SweepConfig
from dsbench.profile.run import run_profile, save
from dsbench.store import Store
from dsbench.sweep import run_sweep

PAPER = {80.0: 0.51, 120.0: 6.61}  # DSpark over MTP-1 in aggregate throughput (paper section 5)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        pcfg = ProfileConfig(
            target="v4-flash-like", roofline="H800", gpus=8, dp=8, ep=8, context=4096, out=Path(tmp) / "p.json"
        )
        profile = str(save(run_profile(pcfg), Store(pcfg.out, False, single="profile.json")))
        rows = []
        for traffic, extra in (
            ("context 4096, no prefill", {}),
            ("ISL 2048 / OSL 1024 + prefill", {"isl": 2048, "osl": 1024}),
        ):
            for slo in PAPER:
                cfg = SweepConfig(
                    slo=slo,
                    profile=profile,
                    acceptance="qwen3-8b",
                    methods=("mtp-1", "dspark"),
                    policy="dspark-async",
                    gamma=5,
                    **extra,
                )
                m = run_sweep(cfg).summary["methods"]
                gain = m["dspark"]["ratio"] - 1 if m["dspark"]["ratio"] is not None else None
                rows.append(
                    {
                        "traffic": traffic,
                        "slo": slo,
                        "mtp1_tok_s_gpu": m["mtp-1"]["throughput"],
                        "dspark_tok_s_gpu": m["dspark"]["throughput"],
                        "dspark_gain": gain,
                        "paper_gain": PAPER[slo],
                    }
                )
        t = time.perf_counter()
        run_sweep(SweepConfig(profile=profile, acceptance="qwen3-8b", policy="dspark-async"))
        sweep_s = time.perf_counter() - t
    if args.json:
        print(json.dumps({"rows": rows, "five_method_gamma_search_sweep_s": sweep_s}, indent=1))
        return
    print(f"{'traffic':<32} {'SLO':>5} {'MTP-1':>8} {'DSpark':>8} {'gain':>7} {'paper':>7}")
    for r in rows:
        mtp = f"{r['mtp1_tok_s_gpu']:,.0f}" if r["mtp1_tok_s_gpu"] else "infeas."
        dsp = f"{r['dspark_tok_s_gpu']:,.0f}" if r["dspark_tok_s_gpu"] else "infeas."
        gain = f"{r['dspark_gain']:+.0%}" if r["dspark_gain"] is not None else "—"
        print(f"{r['traffic']:<32} {r['slo']:>5.0f} {mtp:>8} {dsp:>8} {gain:>7} {r['paper_gain']:>+7.0%}")
    print(f"five methods, gamma searched 1..7, 8-GPU deployment: {sweep_s:.1f} s")


if __name__ == "__main__":
    main()
