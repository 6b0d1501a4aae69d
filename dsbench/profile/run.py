"""`dsbench profile`: a step-time profile, measured (profile/measure.py, torch) or modelled from a
GPU's datasheet (profile/roofline.py), written through the store as it grows."""

from __future__ import annotations

from pathlib import Path

from ..config import ProfileConfig, Progress, SweepConfig
from ..store import Store


def run_profile(cfg: ProfileConfig, progress: Progress | None = None, store: Store | None = None) -> dict:
    """The profile document; with a store, profile.json is rewritten after every measured point."""
    cfg.validate()
    if cfg.roofline is not None:
        return roofline_document(cfg)
    from .measure import measured_profile

    return measured_profile(cfg, progress, (lambda doc: save(doc, store)) if store is not None else None)


def roofline_document(cfg: ProfileConfig | SweepConfig) -> dict:
    """The roofline profile document of `cfg.target` on `cfg.roofline` in cfg's deployment."""
    from ..core.roofline import Deployment
    from ..shipped import read_gpu, read_model_shape, shipped_weight_dtype
    from .roofline import roofline_profile

    model = read_model_shape(cfg.target)
    tp, dp = cfg.parallelism()
    dtype = shipped_weight_dtype(cfg.target) if cfg.dtype == "auto" else cfg.dtype
    dep = Deployment(tp, cfg.ep, dp, dtype, cfg.kv_dtype, cfg.expert_imbalance)
    return roofline_profile(read_gpu(cfg.roofline), model, cfg.context, deployment=dep)


def save(doc: dict, store: Store) -> Path:
    return store.document("profile.json", doc, "ProfileDoc")
