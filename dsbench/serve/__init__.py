"""Reference OpenAI-compatible server (simulated engine now; the real speculative engine plugs in later)."""
