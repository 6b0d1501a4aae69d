"""Reference OpenAI-compatible server: a simulated speculative engine (engine.py) and the real one (real.py)."""
