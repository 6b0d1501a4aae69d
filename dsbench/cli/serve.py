"""`dsbench serve`: the reference OpenAI-compatible server."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ._common import app, err, handles_input_errors


@app.command(
    epilog="Examples:\n\n"
    "  dsbench serve --sim\n\n"
    "  dsbench serve --sim --method mtp-1 --profile h200-qwen3-8b --port 8001\n\n"
    "  dsbench serve --sim --time-scale 4 --inject-error 500:0.1 --inject-error 429:0.05\n\n"
    "  dsbench serve --target ./Qwen3-8B --draft ./dspark_qwen3_8b_block7 --model-name qwen3-8b"
)
@handles_input_errors
def serve(
    sim: Annotated[bool, typer.Option("--sim", help="Run the simulated engine (rounds timed by the profile, acceptance drawn from the curves).")] = False,
    target: Annotated[Optional[str], typer.Option(help="Real engine: target model folder (safetensors + tokenizer).", rich_help_panel="Real engine")] = None,
    draft: Annotated[Optional[str], typer.Option(help="Real engine: drafter checkpoint in DeepSpec's layout, or `ngram` (prompt lookup).", rich_help_panel="Real engine")] = None,
    temperature: Annotated[float, typer.Option(help="Real engine: sampling temperature.", rich_help_panel="Real engine")] = 1.0,
    device: Annotated[str, typer.Option(help="Real engine: auto, cpu or cuda[:N].", rich_help_panel="Real engine")] = "cpu",
    profile: Annotated[str, typer.Option(help="Profile JSON or shipped name.", rich_help_panel="Engine")] = "h100-qwen3-8b",
    acceptance: Annotated[Optional[str], typer.Option(help="Acceptance file or directory (default: shipped curves for the profile's model).", rich_help_panel="Engine")] = None,
    method: Annotated[str, typer.Option(help="Decoding method: dspark, dflash, eagle3, mtp-1, no-spec.", rich_help_panel="Engine")] = "dspark",
    policy: Annotated[str, typer.Option(help="DSpark verification policy: dspark, dspark-async, fixed[:l], threshold:t.", rich_help_panel="Engine")] = "dspark",
    gamma: Annotated[Optional[int], typer.Option(help="Draft block size (default: 7 simulated; the checkpoint's for the real engine).", rich_help_panel="Engine")] = None,
    domain: Annotated[str, typer.Option(help="Acceptance curves: math, code, chat, or mix (one drawn per request).", rich_help_panel="Engine")] = "mix",
    time_scale: Annotated[float, typer.Option(help="Wall seconds per simulated second (2 = twice as slow).", rich_help_panel="Engine")] = 1.0,
    seed: Annotated[int, typer.Option(help="Random seed of the engine.", rich_help_panel="Engine")] = 0,
    host: Annotated[str, typer.Option(help="Address to bind (loopback unless you mean otherwise).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to bind.")] = 8000,
    model_name: Annotated[str, typer.Option(help="Model id the server answers to.")] = "dsbench-sim",
    inject_error: Annotated[list[str], typer.Option(help="Fault injection for client tests: STATUS:FRACTION, repeatable (e.g. 500:0.1).", rich_help_panel="Fault injection")] = [],  # noqa: B006
    stall_after: Annotated[Optional[int], typer.Option(help="Stall every stream after this many chunks.", rich_help_panel="Fault injection")] = None,
):
    """Serve an OpenAI-compatible API on 127.0.0.1: a simulated speculative engine, or a real one.

    Rounds of all in-flight requests are batched continuously; each round lasts
    T_draft + step_s(B, R) from the profile, the verification policy picks each request's
    length, and each round's committed tokens go out as one SSE chunk. /metrics exposes vLLM's
    speculative-decoding counters. With --target (and --draft) the rounds are real in-process
    speculative decoding of every in-flight request, interleaved round by round.
    """
    from ..errors import InputError

    if sim == bool(target):
        raise InputError("choose one engine: --sim, or --target PATH [--draft PATH]")
    if not time_scale > 0:
        raise InputError(f"--time-scale must be > 0, got {time_scale}")
    faults = _parse_faults(inject_error, stall_after, seed)
    engine = (_real_engine(target, draft, policy, gamma, temperature, device, seed, model_name, profile) if target
              else _sim_engine(profile, acceptance, domain, method, policy, gamma, time_scale, seed, model_name))
    from ..serve.app import create_app
    from ..serve.app import serve as run_server

    run_server(create_app(engine, faults), host, port, on_ready=lambda _s: err.print(f"listening on http://{host}:{port}", highlight=False))


def _sim_engine(profile, acceptance, domain, method, policy, gamma, time_scale, seed, model_name):
    from ..serve.engine import SimEngine
    from ..config import SweepConfig
    from ..sweep import build_scenarios, load_inputs

    cfg = SweepConfig(profile=profile, acceptance=acceptance, domain=domain, methods=(method,), baseline=method,
                      policy=policy, gamma=gamma or 7)
    prof, curves, acc_ref = load_inputs(cfg)
    scenario = build_scenarios(cfg, cfg.validate(), prof, curves, acc_ref)[method]
    cap = f", at most {prof.max_requests} requests in flight (KV memory)" if prof.max_requests else ""
    err.print(f"dsbench serve: simulated {method} ({scenario.policy}, gamma {scenario.gamma}) on {prof.label}, "
              f"time scale {time_scale:g}, model id {model_name!r}{cap}", highlight=False)
    card = {"method": method, "profile": prof.path.stem, "profile_source": prof.source, "device": prof.device.get("name"),
            "gpus": prof.gpus, "model": prof.model.get("name")}
    return SimEngine(scenario, time_scale=time_scale, seed=seed, model_name=model_name, max_running=prof.max_requests,
                     card=card)


def _real_engine(target, draft, policy, gamma, temperature, device, seed, model_name, profile):
    from ..accept import build_decoder
    from ..serve.real import RealEngine

    dec, tok, method = build_decoder(target, draft, policy, gamma, temperature, device, seed, profile)
    err.print(f"dsbench serve: real engine, target {target}, "
              + (f"{method} drafter, gamma {dec.gamma}, {dec.policy}" if dec.gamma else "no drafter"), highlight=False)
    return RealEngine(dec, tok, model_name, {"target": Path(target).name, "method": method,
                                             "device": str(device)})


def _parse_faults(specs: list[str], stall_after: int | None, seed: int):
    from ..errors import InputError
    from ..serve.app import Faults

    rates = {}
    for spec in specs:
        status, _, frac = spec.partition(":")
        try:
            st, p = int(status), float(frac)
        except ValueError:
            raise InputError(f"--inject-error {spec!r}: expected STATUS:FRACTION, e.g. 500:0.1") from None
        if not (400 <= st <= 599 and 0 <= p <= 1):
            raise InputError(f"--inject-error {spec!r}: status must be 4xx/5xx and fraction in [0, 1]")
        rates[st] = p
    if sum(rates.values()) > 1:
        raise InputError("--inject-error fractions add up to more than 1")
    return Faults(rates, stall_after, seed=seed)
