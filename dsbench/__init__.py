"""dsbench: benchmarking and capacity planning for speculative decoding."""

__version__ = "0.3.0"
