import json
import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import settings

REPO = Path(__file__).resolve().parent.parent

# CI replays the same examples every run (a red CI must be reproducible); elsewhere hypothesis
# explores new ones each run, which is how the bad-input tests keep finding bugs.
settings.register_profile("ci", derandomize=True, database=None)
if os.environ.get("CI"):
    settings.load_profile("ci")


@pytest.fixture
def write_json(tmp_path):
    """Write a dict as JSON into tmp_path and return the path."""

    def _write(name: str, data) -> Path:
        p = tmp_path / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps(data) if not isinstance(data, str) else data)
        return p

    return _write


def smooth_verify_table(r: int, gamma: int, floor_s=0.010, per_token_s=2e-5, knee=None) -> np.ndarray:
    """A smooth, convex step-time table: flat (memory-bound) until `knee` tokens, then linear,
    joined by a softplus so there are no corners. Index = batch tokens."""
    b = np.arange(r * (1 + gamma) + 2, dtype=float)
    knee = r * 3 if knee is None else knee
    x = (b - knee) * per_token_s
    return floor_s + 0.002 * np.log1p(np.exp(x / 0.002))
