"""`dsbench search`: the highest throughput at a per-user speed SLO, measured on live servers."""

from __future__ import annotations

import json
import sys

from ..config import SearchConfig
from . import present
from ._common import app, console, err, from_config, handles_input_errors, progress_bar


@app.command(
    epilog="Examples:\n\n"
    "  dsbench search --slo 80 --url http://127.0.0.1:8000 --workload chat --max-tokens 256\n\n"
    "  dsbench search --slo 80 --workload code --serve 'mtp-1=dsbench serve --sim --method mtp-1 --port {port}' "
    "--serve 'dspark=dsbench serve --sim --method dspark --port {port}'\n\n"
    "  dsbench search --slo 40 --slo-stat p90 --slo-ttft-s 2 --workload chat --serve "
    "'no-spec=python -m vllm.entrypoints.openai.api_server --model /models/q --port {port}'"
)
@handles_input_errors
@from_config(SearchConfig, quiet=True)
def search(cfg: SearchConfig, as_json: bool, quiet: bool):
    """Find, by measuring, the highest throughput each server holds at a per-user speed SLO.

    Per server (--url, or each --serve LABEL=COMMAND, which dsbench starts, waits for and stops):
    measure a concurrency, fit TPOT = a + b x concurrency to the points so far, measure where the
    fit crosses the SLO, and repeat until the best concurrency is bracketed between a point that
    meets the SLO and one that fails it, their throughputs within --tolerance. Each measurement is
    cut into --windows for intervals; a point whose interval straddles the SLO is measured again.
    Escalation stops at over-saturation (errors, a server queue, TTFT rising). Every point is a
    load run in OUT/LABEL/; search.json is written as points arrive, and a search run again in
    the same --out resumes.
    """
    from ..search import run_search
    from ..store import Store

    cfg.validate()
    show = not (quiet or as_json)
    on_step = (lambda *a: err.print(present.search_step(*a), highlight=False)) if show else None
    with progress_bar("measurement", show) as progress:
        doc = run_search(cfg, Store(cfg.out, cfg.force), progress, on_step)
    if as_json:
        sys.stdout.write(json.dumps(doc) + "\n")
        return
    present.search(doc)
    console.print(f"wrote {cfg.out}/search.json and one load run per server in {cfg.out}/", style="dim")
