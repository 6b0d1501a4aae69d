"""Measured CUDA profiles against the roofline of the GPU they ran on: one JSON on stdout.

    python benchmarks/gpu_compare.py EAGER.json [GRAPHS.json] [--gpu NAME] [--tests-rc N --tests-log F]

Per point: measured step time, the roofline's (default knobs, the profile's model and context)
and their ratio; per drafter and (R, gamma) the same; medians of the ratios -- how far the
shipped roofline profiles are from this GPU. Written by benchmarks/gpu_check.sh.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from dsbench.core import roofline as rl
from dsbench.core.methods import METHODS
from dsbench.readers import read_profile
from dsbench.shipped import read_gpu, read_model_shape


def compare(path: str, gpu: str | None) -> dict:
    p = read_profile(path)
    hw = read_gpu(gpu or p.device["name"])
    shape = read_model_shape(p.model["name"])
    kn = rl.RooflineKnobs()
    points = []
    for b, r, s in zip(p.batch_tokens, p.requests, p.step_s):
        model = float(rl.verify_step_s(hw, shape, kn, b, r, p.context_len))
        points.append({"requests": r, "batch_tokens": b, "measured_s": s, "roofline_s": model, "ratio": s / model})
    drafts = {}
    for method, table in p.draft.items():
        kind = METHODS[method].drafting
        rows = []
        for r, g, s in zip(table["requests"], table["gamma"], table["step_s"]):
            model = float(rl.draft_step_s(hw, shape, kn, kind, r, int(g), p.context_len))
            rows.append({"requests": r, "gamma": g, "measured_s": s, "roofline_s": model, "ratio": s / model})
        drafts[method] = {"points": rows, "median_ratio": statistics.median(x["ratio"] for x in rows)}
    return {
        "file": path,
        "device": p.device,
        "gpu_row": hw.name,
        "cuda_graph": bool(p.raw.get("cuda_graph")),
        "complete": p.raw.get("complete"),
        "noisy_points": p.raw.get("noisy_points", []),
        "median_ratio": statistics.median(x["ratio"] for x in points),
        "points": points,
        "draft": drafts,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("profiles", nargs="+")
    ap.add_argument("--gpu", help="GPU-table row to compare with (default: the profile's device name)")
    ap.add_argument("--tests-rc", type=int)
    ap.add_argument("--tests-log")
    args = ap.parse_args()
    out = {"profiles": []}
    for path in args.profiles:
        try:
            out["profiles"].append(compare(path, args.gpu))
        except Exception as e:  # one broken profile must not lose the others' figures
            out["profiles"].append({"file": path, "error": f"{type(e).__name__}: {e}"})
    if args.tests_rc is not None:
        log = Path(args.tests_log).read_text().splitlines()[-3:] if args.tests_log else []
        out["gpu_tests"] = {"rc": args.tests_rc, "tail": log}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
