"""Regenerate the shipped default profiles and acceptance curves.

    python profiles/make_defaults.py            # rewrite profiles/*.json and profiles/acceptance/
    python profiles/make_defaults.py --check    # exit 1 if any shipped file differs

Roofline profiles: core.roofline with RooflineKnobs() defaults, for each GPU x model below.
Acceptance curves (`source: paper`) are derived from the DSpark paper for Qwen3-8B at gamma = 7:
each (method, domain) curve is a straight line in position, c_k = c_1 + (c_7 - c_1) (k - 1) / 6,
whose start c_1 is read off Figure 2 (Qwen3-4B domain means; where the text gives no number it
is marked `assumed` below) and whose end c_7 is solved so that E[tau] = 1 + sum_j prod_{i<=j} c_i
equals the mean of the domain's three Table 1 benchmarks for Qwen3-8B. MTP-1 is 0.85 everywhere
(DeepSeek-V3 report: 85-90 % second-token acceptance).
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import numpy as np
from scipy.optimize import brentq

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from dsbench.core.acceptance import DEFAULT_ROUND_SHARE, DEFAULT_SIGMA, expected_tau  # noqa: E402
from dsbench.profile.roofline import roofline_profile  # noqa: E402
from dsbench.readers import ACCEPTANCE_SCHEMA  # noqa: E402
from dsbench.shipped import read_gpu, read_model_shape  # noqa: E402
from dsbench.store import write_json  # noqa: E402

GPUS = ("H100", "H200", "A100", "B200", "MI300X", "L40S")
MODELS = ("qwen3-8b",)
CONTEXT_LEN = 2048

# Table 1, Qwen3-8B, gamma = 7, temperature 1: (benchmark, tau) per domain.
TABLE1_QWEN3_8B = {
    "eagle3": {"math": (5.30, 4.77, 3.91), "code": (3.96, 4.33, 4.17), "chat": (2.66, 2.54, 2.54)},
    "dflash": {"math": (5.33, 4.91, 4.07), "code": (4.36, 4.64, 4.39), "chat": (3.11, 2.98, 2.81)},
    "dspark": {"math": (6.17, 5.78, 5.01), "code": (5.16, 5.52, 5.17), "chat": (3.72, 3.58, 3.21)},
}
BENCHMARKS = {
    "math": "GSM8K, MATH500, AIME25",
    "code": "MBPP, HumanEval, LiveCodeBench",
    "chat": "MT-Bench, Alpaca, Arena-Hard",
}
# Position-1 conditional acceptance (Figure 2) and whether the paper states it.
C1 = {
    "eagle3": {
        "math": (0.81, "stated"),
        "code": (0.76, "assumed"),
        "chat": (0.56, "stated 0.53 for Qwen3-4B; raised for 8B's higher tau"),
    },
    "dflash": {"math": (0.88, "stated"), "code": (0.87, "stated"), "chat": (0.72, "stated")},
    "dspark": {"math": (0.92, "stated ~0.93"), "code": (0.89, "assumed"), "chat": (0.74, "assumed")},
}
SHAPE = {"eagle3": "flat or rising", "dflash": "decaying", "dspark": "high and steady"}
MTP1_ACCEPT = 0.85


def linear_curve(c1: float, tau: float, gamma: int = 7) -> np.ndarray:
    """The straight-line conditional curve from c1 whose E[tau] at full length is `tau`."""
    end = brentq(lambda e: expected_tau(np.linspace(c1, e, gamma)) - tau, 0.01, 0.999, xtol=1e-12)
    return np.linspace(c1, end, gamma)


def acceptance_docs() -> dict[str, dict]:
    spread = {
        "sigma": DEFAULT_SIGMA,
        "round_share": DEFAULT_ROUND_SHARE,
        "note": "per-round spread (see dsbench/core/acceptance.py); default chosen so oracle confidences "
        "reach the paper's confidence-head AUC (0.82-0.91)",
    }
    docs = {}
    for method, domains in TABLE1_QWEN3_8B.items():
        for domain, taus in domains.items():
            c1, c1_note = C1[method][domain]
            tau = float(np.mean(taus))
            curve = linear_curve(c1, tau)
            docs[f"{method}-{domain}"] = {
                "schema": ACCEPTANCE_SCHEMA,
                "source": "paper",
                "method": method,
                "target": "qwen3-8b",
                "domain": domain,
                "gamma": 7,
                "temperature": 1.0,
                "conditional": [round(float(c), 6) for c in curve],
                "tau": round(expected_tau(curve), 6),
                "spread": spread,
                "derivation": {
                    "tau_target": round(tau, 6),
                    "tau_from": f"DSpark paper Table 1, Qwen3-8B, mean of {BENCHMARKS[domain]} {list(taus)}",
                    "c1": c1,
                    "c1_from": f"DSpark paper Figure 2 (Qwen3-4B): {c1_note}",
                    "shape": f"linear in position; Figure 2 describes {method} as {SHAPE[method]}",
                },
            }
    for domain in ("math", "code", "chat"):
        docs[f"mtp-1-{domain}"] = {
            "schema": ACCEPTANCE_SCHEMA,
            "source": "paper",
            "method": "mtp-1",
            "target": "qwen3-8b",
            "domain": domain,
            "gamma": 1,
            "temperature": 1.0,
            "conditional": [MTP1_ACCEPT],
            "tau": 1 + MTP1_ACCEPT,
            "spread": spread,
            "derivation": {
                "c1_from": "DSpark paper, citing the DeepSeek-V3 report: 85-90 % acceptance of the MTP token; "
                "the low end, for every domain"
            },
        }
    return docs


def build(root: Path) -> list[Path]:
    written = []
    for model in MODELS:
        spec = read_model_shape(model)
        for gpu in GPUS:
            doc = roofline_profile(read_gpu(gpu), spec, CONTEXT_LEN, command=["python", "profiles/make_defaults.py"])
            doc["provenance"]["created"] = "fixed"  # keep regeneration byte-identical, whatever the machine
            for key in ("python", "host", "torch", "transformers"):
                doc["provenance"].pop(key, None)
            path = root / f"{gpu.lower()}-{model}.json"
            write_json(path, doc)
            written.append(path)
        for name, doc in acceptance_docs().items():
            path = root / "acceptance" / model / f"{name}.json"
            write_json(path, doc)
            written.append(path)
    return written


def main(argv: list[str]) -> int:
    if "--check" in argv:
        with tempfile.TemporaryDirectory() as tmp:
            stale = [
                p.relative_to(tmp)
                for p in build(Path(tmp))
                if not (HERE / p.relative_to(tmp)).exists()
                or json.loads((HERE / p.relative_to(tmp)).read_text()) != json.loads(p.read_text())
            ]
        for p in stale:
            print(f"stale: profiles/{p}")
        return 1 if stale else 0
    for p in build(HERE):
        print(p.relative_to(HERE.parent))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
