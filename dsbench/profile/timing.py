"""Time forward passes one way everywhere: warm-up thrown away, device synchronised around every
timed call, CUDA events on GPU and perf_counter on CPU, median and spread reported."""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Timing:
    """Seconds of repeated calls of one function."""

    samples_s: np.ndarray

    @property
    def median_s(self) -> float:
        return float(np.median(self.samples_s))

    @property
    def cv(self) -> float:
        """Coefficient of variation (std / mean) of the samples."""
        return float(self.samples_s.std(ddof=1) / self.samples_s.mean()) if len(self.samples_s) > 1 else 0.0

    @property
    def robust_cv(self) -> float:
        """1.4826 * median absolute deviation / median: the CV a normal spread would have, blind
        to the occasional scheduler hiccup that inflates the plain CV on a shared CPU."""
        med = np.median(self.samples_s)
        return float(1.4826 * np.median(np.abs(self.samples_s - med)) / med)

    def pct(self, q: float) -> float:
        return float(np.percentile(self.samples_s, q))


def time_calls(fn: Callable[[], object], repeats: int, warmup: int, device: str = "cpu") -> Timing:
    """Call `fn` `warmup` times untimed, then `repeats` times, each timed on its own."""
    cuda = device.startswith("cuda")
    for _ in range(warmup):
        fn()
    gc_was_enabled = gc.isenabled()
    gc.disable()  # as timeit does: a collection inside one timed call is not the model's cost
    try:
        return _timed(fn, repeats, cuda)
    finally:
        if gc_was_enabled:
            gc.enable()


def _timed(fn, repeats: int, cuda: bool) -> Timing:
    import torch

    if cuda:  # pragma: no cover - needs a GPU
        torch.cuda.synchronize()
        starts = [torch.cuda.Event(enable_timing=True) for _ in range(repeats)]
        ends = [torch.cuda.Event(enable_timing=True) for _ in range(repeats)]
        for s, e in zip(starts, ends):
            s.record()
            fn()
            e.record()
        torch.cuda.synchronize()
        return Timing(np.array([s.elapsed_time(e) / 1e3 for s, e in zip(starts, ends)]))
    out = np.empty(repeats)
    for i in range(repeats):
        t0 = time.perf_counter()
        fn()
        out[i] = time.perf_counter() - t0
    return Timing(out)


def cuda_graphed(fn: Callable[[], object], warmup: int = 3) -> Callable[[], object]:  # pragma: no cover - needs a GPU
    """Capture `fn` (static inputs, in-place cache) into a CUDA graph; returns its replay.

    As serving engines do for decode steps: replay removes per-kernel launch overhead, which a
    Python-driven forward would otherwise add to every point.
    """
    import torch

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(warmup):
            fn()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    return graph.replay
