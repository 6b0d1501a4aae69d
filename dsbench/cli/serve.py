"""`dsbench serve`: the reference OpenAI-compatible server."""

from __future__ import annotations

from ..config import ServeConfig
from ._common import app, err, from_config, handles_input_errors


@app.command(
    epilog="Examples:\n\n"
    "  dsbench serve --sim\n\n"
    "  dsbench serve --sim --method mtp-1 --profile h200-qwen3-8b --port 8001\n\n"
    "  dsbench serve --sim --time-scale 4 --inject-error 500:0.1 --inject-error 429:0.05\n\n"
    "  dsbench serve --target ./Qwen3-8B --draft ./dspark_qwen3_8b_block7 --model-name qwen3-8b"
)
@handles_input_errors
@from_config(ServeConfig, json=False)
def serve(cfg: ServeConfig):
    """Serve an OpenAI-compatible API on 127.0.0.1: a simulated speculative engine, or a real one.

    Rounds of all in-flight requests are batched continuously; each round lasts
    T_draft + step_s(B, R) from the profile, the verification policy picks each request's
    length, and each round's committed tokens go out as one SSE chunk. /metrics exposes vLLM's
    speculative-decoding counters. With --target (and --draft) the rounds are real in-process
    speculative decoding of every in-flight request, interleaved round by round.
    """
    from ..serve.app import create_app
    from ..serve.app import serve as run_server
    from ..serve.build import build_engine, build_faults

    faults = build_faults(cfg)
    engine = build_engine(cfg, lambda line: err.print(line, highlight=False))
    run_server(
        create_app(engine, faults),
        cfg.host,
        cfg.port,
        on_ready=lambda _s: err.print(f"listening on http://{cfg.host}:{cfg.port}", highlight=False),
    )
