"""Briefly trained fixtures, so measured acceptance means something (no downloads, CPU only).

- target: the tiny Qwen3 of tests/servers.py, trained for a few hundred steps to answer each of the
  project's own prompts with the next prompt's text (chat template, so `dsbench accept` renders
  the same way);
- drafters: DFlash and DSpark block drafters (1 layer, rank-32 Markov head) distilled on the
  target's own sampled continuations, teacher-forced: CE on each block slot (weights exp(-k/4))
  for both; DSpark adds the Markov correction and trains its confidence head (BCE against the
  analytic per-step acceptance 1 - 0.5 ||p_d - p_t||_1), as DeepSpec does.
Everything is cached under the pytest cache directory, keyed by VERSION. Building takes ~55 s of
CPU on one thread (target 39 s, samples 2 s, drafters 7 + 8 s): the target trains on length
buckets, not one batch padded to the longest, the drafters share one set of target samples and
read the context's keys once per sequence, not once per anchor.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from dsbench.speculative.checkpoints import save_drafter
from dsbench.speculative.models import BlockModel, block_train_forward
from tests.servers import REPO, build_tiny_qwen3

VERSION = "trained-v5"  # v5: drafter configs carry every field DeepSpec asserts
GAMMA = 4
LAYER_IDS = [0]


def _render(tok, user: str, answer: str | None = None) -> list[int]:
    text = tok.apply_chat_template([{"role": "user", "content": user}], tokenize=False, add_generation_prompt=True)
    if answer is not None:
        text += answer + "<|im_end|>"
    return tok(text, add_special_tokens=False)["input_ids"]


def _prompts() -> list[str]:
    return [
        json.loads(line)["prompt"]
        for name in ("math", "code", "chat")
        for line in (REPO / "workloads" / f"{name}.jsonl").read_text().splitlines()
        if line.strip()
    ]


def train_target(out: Path, steps: int = 300, **shape) -> Path:
    """The tiny target trained to answer each project prompt with the next one's text (`shape`:
    build_tiny_qwen3's size arguments)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    build_tiny_qwen3(out, **shape)
    tok = AutoTokenizer.from_pretrained(out)
    model = AutoModelForCausalLM.from_pretrained(out)
    prompts = _prompts()
    seqs = sorted((_render(tok, p, prompts[(i + 1) % len(prompts)]) for i, p in enumerate(prompts)), key=len)
    # three length buckets instead of one batch padded to the longest: the same full-batch
    # gradient (token losses summed over buckets / all tokens) with a quarter less padding
    buckets = []
    for part in (seqs[k * len(seqs) // 3 : (k + 1) * len(seqs) // 3] for k in range(3)):
        width = max(map(len, part))
        ids = torch.full((len(part), width), tok.pad_token_id)
        labels = torch.full((len(part), width), -100)
        for i, s in enumerate(part):
            ids[i, : len(s)] = torch.tensor(s)
            labels[i, : len(s)] = torch.tensor(s)
        buckets.append((ids, labels, int((labels[:, 1:] != -100).sum())))
    total = sum(n for _, _, n in buckets)
    torch.manual_seed(0)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(steps):
        loss = sum(
            model(input_ids=ids, attention_mask=(labels != -100).long(), labels=labels).loss * (n / total)
            for ids, labels, n in buckets
        )
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    model.save_pretrained(out)
    return out


def target_samples(target_dir: Path) -> list[tuple]:
    """The target's own continuations of the project's prompts with its features and
    distributions: (tokens, features, probabilities, anchors) per sample, for distillation."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(target_dir)
    target = AutoModelForCausalLM.from_pretrained(target_dir).eval()
    torch.manual_seed(1)
    data = []
    with torch.no_grad():  # (not inference_mode: these tensors feed training)
        for p in _prompts():
            prompt = torch.tensor([_render(tok, p)])
            seq = target.generate(
                prompt,
                max_new_tokens=40,
                do_sample=True,
                temperature=1.0,
                top_k=0,
                top_p=1.0,
                pad_token_id=tok.pad_token_id,
            )[0]
            out_t = target(input_ids=seq[None], output_hidden_states=True)
            feats = torch.cat([out_t.hidden_states[i + 1][0] for i in LAYER_IDS], -1)
            probs = torch.softmax(out_t.logits[0].float(), -1)  # probs[t] predicts token t+1
            anchors = torch.arange(prompt.shape[1] - 1, len(seq) - GAMMA)
            if len(anchors):  # a sample that stopped at once teaches nothing
                data.append((seq, feats, probs, anchors))
    return data


def distill(target_dir: Path, out: Path, markov: bool, data: list[tuple], epochs: int = 30) -> Path:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(target_dir)
    target = AutoModelForCausalLM.from_pretrained(target_dir)  # for its config, embedding and head
    d = BlockModel(
        target.config,
        draft_layers=1,
        n_features=len(LAYER_IDS),
        markov_rank=32 if markov else 0,
        confidence=markov,
        mask_token_id=tok.pad_token_id,
    )
    with torch.no_grad():  # frozen copies of the target's embedding and head, as DeepSpec keeps them
        d.embed_tokens.weight.copy_(target.get_input_embeddings().weight)
        d.lm_head.weight.copy_(target.get_output_embeddings().weight)
    d.embed_tokens.weight.requires_grad_(False)
    d.lm_head.weight.requires_grad_(False)
    opt = torch.optim.AdamW([p for p in d.parameters() if p.requires_grad], lr=3e-3)
    w = torch.exp(-torch.arange(GAMMA) / 4.0)
    d.train()
    for _ in range(epochs):
        for seq, feats, probs, anchors in data:
            logits, _, corrected, conf = block_train_forward(d, seq, feats, anchors, GAMMA)
            out_logits = corrected if corrected is not None else logits
            tgt_pos = anchors[:, None] + torch.arange(1, GAMMA + 1)[None, :]
            ce = torch.nn.functional.cross_entropy(
                out_logits.reshape(-1, out_logits.shape[-1]), seq[tgt_pos].reshape(-1), reduction="none"
            ).view(-1, GAMMA)
            loss = (ce * w).mean()
            if conf is not None:
                p_t = probs[tgt_pos - 1]  # the target's distribution for each slot's token
                p_d = torch.softmax(out_logits, -1)
                accept = (1 - 0.5 * (p_d - p_t).abs().sum(-1)).detach().clamp(0, 1)
                loss = loss + torch.nn.functional.binary_cross_entropy_with_logits(conf, accept)
            opt.zero_grad()
            loss.backward()
            opt.step()
    d.eval()
    return save_drafter(d, "dspark" if markov else "dflash", target.config, out, LAYER_IDS, GAMMA)


def fixtures(cache_dir: Path) -> dict[str, Path]:
    """Paths of the trained target and distilled drafters, built once per VERSION."""
    root = Path(cache_dir) / VERSION
    done = root / "done"
    if not done.exists():
        shutil.rmtree(root, ignore_errors=True)
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # these models are tiny: one thread builds them in ~55 s of CPU, two in ~76 s
        try:
            target = train_target(root / "target")
            data = target_samples(target)
            distill(target, root / "dflash", markov=False, data=data)
            distill(target, root / "dspark", markov=True, data=data)
        finally:
            torch.set_num_threads(threads)
        done.write_text("ok")
    return {"target": root / "target", "dflash": root / "dflash", "dspark": root / "dspark"}
