"""The engine and fault injection `dsbench serve` runs, built from its config: the simulated
engine from a sweep's inputs (profile, curves, policy), the real one from accept's decoder."""

from __future__ import annotations

from pathlib import Path

from ..config import ServeConfig, SweepConfig
from ..errors import InputError


def build_engine(cfg: ServeConfig, say=print):
    """The simulated or real engine of `cfg`; `say(line)` describes it."""
    cfg.validate()
    return _real_engine(cfg, say) if cfg.target else _sim_engine(cfg, say)


def _sim_engine(cfg: ServeConfig, say):
    from ..sweep import build_scenarios, load_inputs
    from .engine import SimEngine

    sweep = SweepConfig(
        profile=cfg.profile,
        acceptance=cfg.acceptance,
        domain=cfg.domain,
        methods=(cfg.method,),
        baseline=cfg.method,
        policy=cfg.policy,
        gamma=cfg.gamma,
    )
    policy = sweep.validate()
    prof, curves, acc_ref = load_inputs(sweep)
    scenario = build_scenarios(sweep, policy, prof, curves, acc_ref)[cfg.method]
    cap = f", at most {prof.max_requests} requests in flight (KV memory)" if prof.max_requests else ""
    say(
        f"dsbench serve: simulated {cfg.method} ({scenario.policy}, gamma {scenario.gamma}) on {prof.label}, "
        f"time scale {cfg.time_scale:g}, model id {cfg.model_name!r}{cap}"
    )
    card = {
        "method": cfg.method,
        "profile": prof.path.stem,
        "profile_source": prof.source,
        "device": prof.device.get("name"),
        "gpus": prof.gpus,
        "model": prof.model.get("name"),
    }
    return SimEngine(
        scenario,
        time_scale=cfg.time_scale,
        seed=cfg.seed,
        model_name=cfg.model_name,
        max_running=prof.max_requests,
        card=card,
    )


def _real_engine(cfg: ServeConfig, say):
    from ..accept import build_decoder
    from .real import RealEngine

    dec, tok, method = build_decoder(
        cfg.target, cfg.draft, cfg.policy, cfg.gamma, cfg.temperature, cfg.device, cfg.seed, cfg.profile
    )
    say(
        f"dsbench serve: real engine, target {cfg.target}, "
        + (f"{method} drafter, gamma {dec.gamma}, {dec.policy}" if dec.gamma else "no drafter")
    )
    return RealEngine(
        dec, tok, cfg.model_name, {"target": Path(cfg.target).name, "method": method, "device": str(cfg.device)}
    )


def build_faults(cfg: ServeConfig):
    """The fault injection of --inject-error STATUS:FRACTION and --stall-after."""
    from .app import Faults

    rates = {}
    for spec in cfg.inject_error:
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
    return Faults(rates, cfg.stall_after, seed=cfg.seed)
