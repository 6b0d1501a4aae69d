"""In-process speculative decoding: drafters (now), rejection sampling and checkpoint loading (next)."""
