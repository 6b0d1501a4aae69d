"""`dsbench serve`: the reference OpenAI-compatible server."""

from __future__ import annotations

from typing import Optional

from ..config import ServeConfig
from ._common import app, config, err, handles_input_errors, option


@app.command(
    epilog="Examples:\n\n"
    "  dsbench serve --sim\n\n"
    "  dsbench serve --sim --method mtp-1 --profile h200-qwen3-8b --port 8001\n\n"
    "  dsbench serve --sim --time-scale 4 --inject-error 500:0.1 --inject-error 429:0.05\n\n"
    "  dsbench serve --target ./Qwen3-8B --draft ./dspark_qwen3_8b_block7 --model-name qwen3-8b"
)
@handles_input_errors
def serve(
    sim: bool = option(ServeConfig, "sim"),
    target: Optional[str] = option(ServeConfig, "target"),
    draft: Optional[str] = option(ServeConfig, "draft"),
    temperature: float = option(ServeConfig, "temperature"),
    device: str = option(ServeConfig, "device"),
    profile: str = option(ServeConfig, "profile"),
    acceptance: Optional[str] = option(ServeConfig, "acceptance"),
    method: str = option(ServeConfig, "method"),
    policy: str = option(ServeConfig, "policy"),
    gamma: Optional[int] = option(ServeConfig, "gamma"),
    domain: str = option(ServeConfig, "domain"),
    time_scale: float = option(ServeConfig, "time_scale"),
    seed: int = option(ServeConfig, "seed"),
    host: str = option(ServeConfig, "host"),
    port: int = option(ServeConfig, "port"),
    model_name: str = option(ServeConfig, "model_name"),
    inject_error: list[str] = option(ServeConfig, "inject_error"),
    stall_after: Optional[int] = option(ServeConfig, "stall_after"),
):
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

    cfg = config(ServeConfig, locals())
    faults = build_faults(cfg)
    engine = build_engine(cfg, lambda line: err.print(line, highlight=False))
    run_server(
        create_app(engine, faults),
        cfg.host,
        cfg.port,
        on_ready=lambda _s: err.print(f"listening on http://{cfg.host}:{cfg.port}", highlight=False),
    )
