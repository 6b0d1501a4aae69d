"""Convert a tiny local Hugging Face model to GGUF with llama.cpp's own converter.

    python tests/engines/to_gguf.py LLAMA_CPP_DIR MODEL_DIR OUT.gguf

LLAMA_CPP_DIR is what scripts/engines/llama-cpp.sh prints. The converter recognises a BPE
pre-tokenizer by hashing how it splits a probe text and refuses unknown ones; the tests' tokenizer
is trained locally (byte-level, GPT-2 style splitting), so its pre-tokenizer is registered as
"gpt-2" here instead of by hash, and it has no sentencepiece model to look for.
"""

import sys
from pathlib import Path

root, model, out = map(Path, sys.argv[1:4])
sys.path[:0] = [str(root), str(root / "gguf-py")]
import convert_hf_to_gguf  # noqa: E402
from conversion.base import TextModel  # noqa: E402

TextModel.get_vocab_base_pre = lambda self, tokenizer: "gpt-2"


def _no_sentencepiece(self):  # Qwen's converter tries a sentencepiece model first; ours is BPE only
    raise FileNotFoundError("no tokenizer.model")


TextModel._set_vocab_sentencepiece = _no_sentencepiece
sys.argv = ["convert_hf_to_gguf.py", str(model), "--outfile", str(out), "--outtype", "f32"]
convert_hf_to_gguf.main()
