"""`dsbench profile`: a step-time profile, measured (profile/measure.py, torch) or modelled from a
GPU's datasheet (profile/roofline.py), written through the store as it grows."""

from __future__ import annotations

from pathlib import Path

from ..config import ProfileConfig, Progress
from ..store import Store


def run_profile(cfg: ProfileConfig, progress: Progress | None = None, store: Store | None = None) -> dict:
    """The profile document; with a store, profile.json is rewritten after every measured point."""
    cfg.validate()
    if cfg.roofline is not None:
        from ..shipped import read_gpu, read_model_shape
        from .roofline import roofline_profile

        return roofline_profile(read_gpu(cfg.roofline), read_model_shape(cfg.target), cfg.context)
    from .measure import measured_profile

    return measured_profile(cfg, progress, (lambda doc: save(doc, store)) if store is not None else None)


def save(doc: dict, store: Store) -> Path:
    return store.document("profile.json", doc, "ProfileDoc")
