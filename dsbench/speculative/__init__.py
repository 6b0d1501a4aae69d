"""In-process speculative decoding: draft models, the drafter protocol, rejection sampling, the batched
engine, checkpoints."""
