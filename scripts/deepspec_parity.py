"""DeepSpec parity, both ways, against DeepSpec's own code (not run by CI: it needs DeepSpec's source).

    python scripts/deepspec_parity.py --deepspec ~/src/DeepSpec --target TARGET --draft DRAFT --tasks DIR

1. Evaluation: DeepSpec's evaluator (`deepspec/eval/*/evaluator.py`, its loop and bookkeeping
   untouched; one process, fp32, greedy) and `dsbench accept --protocol deepspec` on the same
   target, drafter and task files; prints both tables' rows and the largest difference.
2. Layout: drafters dsbench writes (DSpark with vanilla, gated and RNN Markov heads, DFlash with and
   without a confidence head, Eagle3), on a tiny 6-layer Qwen3 target with and without linear RoPE
   scaling, and Gemma4 DSpark and Eagle3 on a tiny Gemma4 (tests/test_gemma4.py), loaded by
   DeepSpec's classes: missing/unexpected/mismatched keys and the largest logit difference of one
   drafting round.
Run it under DeepSpec's pinned transformers (5.10.2); the figures go in the README.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def deepspec_rows(args) -> dict[str, dict]:
    """DeepSpec's metrics rows, from its evaluator class run in this process (gloo, world size 1)."""
    import torch.distributed as dist
    from deepspec.eval.dspark import Qwen3DSparkEvaluator
    from deepspec.eval.eagle3 import Qwen3Eagle3Evaluator
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    arch = AutoConfig.from_pretrained(args.draft).architectures[0]
    base = Qwen3DSparkEvaluator if "DSpark" in arch else Qwen3Eagle3Evaluator

    class OneProcess(base):
        def __init__(self, ev_args):  # BaseEvaluator.__init__ without CUDA/NCCL; models in fp32 on CPU
            self.args, self.device, self.global_rank, self.world_size = ev_args, torch.device("cpu"), 0, 1
            self.tasks = ev_args.tasks
            self.target_model = AutoModelForCausalLM.from_pretrained(ev_args.target_name_or_path).eval()
            self.draft_model = self.draft_model_cls.from_pretrained(ev_args.draft_name_or_path).eval()
            self.tokenizer = AutoTokenizer.from_pretrained(ev_args.target_name_or_path)
            self.metrics_rows = []
            if hasattr(self, "_build_confidence_head_recorder"):
                self.confidence_head_recorder = None

    if base is Qwen3DSparkEvaluator:
        from deepspec.modeling.dspark.qwen3 import Qwen3DSparkModel as cls
    else:
        from deepspec.modeling.eagle3.qwen3 import Qwen3Eagle3Model as cls
    OneProcess.draft_model_cls = cls
    files = {p.stem: p for p in Path(args.tasks).glob("*.jsonl")}
    ev_args = SimpleNamespace(
        target_name_or_path=args.target, draft_name_or_path=args.draft, max_new_tokens=args.max_new_tokens,
        temperature=0.0, confidence_threshold=0.0, seed=980406, tensorboard_dir=None, step=None,
        tasks=[(t, args.samples) for t in files],
    )  # fmt: skip
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", "29517")
    dist.init_process_group("gloo", rank=0, world_size=1)
    ev = OneProcess(ev_args)
    rows = {}
    with tempfile.TemporaryDirectory() as cwd:
        (Path(cwd) / "eval_datasets").symlink_to(Path(args.tasks).resolve())
        here = os.getcwd()
        os.chdir(cwd)
        try:
            for task, n in ev_args.tasks:
                with torch.inference_mode():
                    responses = ev.run_dataset(dataset_name=task, max_samples=n)
                rows[task] = ev.build_metrics_row(
                    dataset_name=task, metric_summary=ev.allreduce_response_metrics(responses)
                )
        finally:
            os.chdir(here)
    dist.destroy_process_group()
    return rows


def dsbench_rows(args) -> dict[str, dict]:
    from dsbench.accept import run_accept
    from dsbench.config import AcceptConfig
    from dsbench.store import Store

    with tempfile.TemporaryDirectory() as out:
        cfg = AcceptConfig(
            workloads=[str(p) for p in sorted(Path(args.tasks).glob("*.jsonl"))], target=args.target,
            draft=args.draft, protocol="deepspec", samples=args.samples, max_new_tokens=args.max_new_tokens,
            temperature=0.0, out=Path(out),
        )  # fmt: skip
        summary = run_accept(cfg, Store(cfg.out, False))
    return {Path(k).stem: v for k, v in summary["datasets"].items()}


def evaluation(args) -> dict:
    theirs, ours = deepspec_rows(args), dsbench_rows(args)
    worst = 0.0
    for task, row in theirs.items():
        mine = ours[task]
        pairs = [
            (row["acceptance_length"], mine["tau"]),
            (row["draft_tokens_per_proposal"], mine["mean_proposal"]),
            (row["verify_rate"], mine["verify_rate"]),
            *zip(row["accept_rates_by_position"], mine["survival"]),
        ]
        worst = max(worst, *(abs(a - b) for a, b in pairs if a is not None and b is not None))
        print(f"{task}: DeepSpec accept_len {row['acceptance_length']:.6f}, dsbench {mine['tau']:.6f}")
    return {"tasks": len(theirs), "largest_difference": worst}


def _loaded(cls, path):
    """DeepSpec's class on a file dsbench wrote, refusing any key it would not fill."""
    theirs, info = cls.from_pretrained(path, output_loading_info=True)
    assert not any(info[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys")), info
    return theirs.eval()


def _block_round(theirs, mine, ids, feats, gamma: int) -> float:
    """One DSpark/DFlash round over prompt `ids` (the last token the anchor) both ways: the largest
    difference in drafted logits and confidences (the drafted tokens must be equal)."""
    from deepspec.eval.dspark.draft_ops import forward_dspark_draft_block
    from transformers import DynamicCache

    from dsbench.speculative.models import kv_cache

    n, anchor = ids.shape[1], ids[:, -1]
    block = torch.full((1, gamma), mine.mask_token_id)
    block[:, 0] = anchor
    with torch.no_grad():
        hid = forward_dspark_draft_block(
            theirs,
            draft_input_ids=block,
            position_ids=torch.arange(n + gamma + 1)[None],
            past_key_values_draft=DynamicCache(),
            target_hidden_states=feats[:, : n - 1],
            start=n - 1,
            block_size=gamma,
        )
        base = theirs.compute_logits(hid)
        toks, logits = theirs.sample_draft_tokens(base, first_prev_token_ids=anchor, temperature=0.0, hidden_states=hid)
        mt, ml, mc = mine.propose(anchor, feats[:, : n - 1], n - 1, gamma, kv_cache(mine, 1, n + 16), temperature=0.0)
        assert torch.equal(mt, toks)
        diff = (ml - logits).abs().max().item()
        if theirs.confidence_head is not None:
            prev = torch.cat([anchor[:, None], toks[:, :-1]], 1)
            conf = torch.sigmoid(theirs.predict_confidence_step(hid, prev_token_ids=prev)).reshape(mc.shape)
            diff = max(diff, (mc - conf).abs().max().item())
    return diff


def _chain_round(theirs, mine, ids, feats, gamma: int) -> float:
    """One Eagle3 round both ways (the prompt extended into the drafter's cache, then `gamma`
    greedy steps): the largest difference in drafted logits."""
    from transformers import DynamicCache

    from dsbench.speculative.models import kv_cache

    n = ids.shape[1]
    pos = torch.arange(n + gamma + 1)[None]
    shifted = torch.cat([ids[:, 1:], ids[:, -1:]], 1)  # features i paired with tokens i + 1
    cache, outs = DynamicCache(), []
    with torch.no_grad():
        h = theirs.extend_draft_cache(
            hidden_states=feats, input_ids=shifted, position_ids=pos[:, :n], past_key_values=cache
        )
        for k in range(gamma):
            outs.append(theirs.compute_logits(h))
            step = dict(input_ids=outs[-1].argmax(-1), position_ids=pos[:, n + k : n + k + 1])
            h = theirs(hidden_states=h, past_key_values=cache, use_cache=True, **step)
        caches = kv_cache(mine, 1, n + 16)
        _, ml = mine.propose_chain(mine.extend(feats, shifted, 0, caches), n, gamma, caches, temperature=0.0)
    return (ml - torch.cat(outs, 1)).abs().max().item()


def _randomised(module, seed: int):
    torch.manual_seed(seed)
    for p in module.parameters():
        torch.nn.init.normal_(p, std=0.3)
    return module


def layouts() -> dict:
    from deepspec.modeling.dspark.qwen3.modeling import Qwen3DSparkModel
    from deepspec.modeling.eagle3.qwen3.modeling import Qwen3Eagle3Model
    from transformers import AutoModelForCausalLM

    from dsbench.speculative.checkpoints import load_drafter, save_drafter
    from dsbench.speculative.models import BlockModel, Eagle3Model
    from tests.servers import build_tiny_qwen3

    ids5 = [-1, 0, 2, 3, 4]
    variants = {
        "dspark-vanilla": dict(markov_rank=16, confidence=True),
        "dspark-gated": dict(markov_rank=16, confidence=True, markov_kind="gated"),
        "dspark-rnn": dict(markov_rank=16, confidence=True, markov_kind="rnn"),
        "dflash": dict(),
        "dflash-confidence": dict(confidence=True),
    }
    worst, root = {}, Path(tempfile.mkdtemp())
    for rope in (None, {"rope_type": "linear", "factor": 2.0, "rope_theta": 10000.0}):
        tdir = build_tiny_qwen3(root / f"target-{bool(rope)}", hidden=64, head_dim=32, layers=6)
        if rope:
            c = json.loads((tdir / "config.json").read_text())
            (tdir / "config.json").write_text(json.dumps({**c, "rope_parameters": rope}))
        target = AutoModelForCausalLM.from_pretrained(tdir).eval()
        torch.manual_seed(0)
        ids = torch.randint(5, target.config.vocab_size, (1, 40))
        with torch.no_grad():
            hidden = target(ids, output_hidden_states=True).hidden_states
        tag = " +rope x2" if rope else ""
        for name, kw in variants.items():
            d = _randomised(BlockModel(target.config, 2, 5, mask_token_id=3, **kw), 1)
            path = save_drafter(d, "dspark" if kw.get("markov_rank") else "dflash", target.config, root / name, ids5, 7)
            feats = torch.cat([hidden[i + 1] for i in ids5], -1)
            mine, _ = load_drafter(path, target)
            worst[name + tag] = _block_round(_loaded(Qwen3DSparkModel, path), mine, ids, feats, 7)
        path = save_drafter(
            _randomised(Eagle3Model(target.config), 2), "eagle3", target.config, root / "e3", list(range(5)), 7
        )
        feats = torch.cat([hidden[i + 1] for i in list(range(5))], -1)
        worst["eagle3" + tag] = _chain_round(
            _loaded(Qwen3Eagle3Model, path), load_drafter(path, target)[0], ids, feats, 7
        )
    return worst


def gemma4_layouts() -> dict:
    """DeepSpec's Gemma4DSparkModel and Gemma4Eagle3Model (transformers 5.10 only) on dsbench's files."""
    from deepspec.modeling.dspark.gemma4.modeling import Gemma4DSparkModel
    from deepspec.modeling.eagle3.gemma4.modeling import Gemma4Eagle3Model

    from dsbench.speculative.checkpoints import load_drafter, save_drafter
    from tests.test_gemma4 import IDS, _drafter, _gemma4

    target, root, worst = _gemma4(0, 0), Path(tempfile.mkdtemp()), {}
    torch.manual_seed(0)
    ids = torch.randint(5, target.config.vocab_size, (1, 30))
    with torch.no_grad():
        feats = torch.cat([target(ids, output_hidden_states=True).hidden_states[i + 1] for i in IDS], -1)
    for kind, cls, compare in (
        ("dspark", Gemma4DSparkModel, _block_round),
        ("eagle3", Gemma4Eagle3Model, _chain_round),
    ):
        path = save_drafter(_drafter(kind, target), kind, target.config, root / kind, IDS, 4)
        worst[f"gemma4-{kind}"] = compare(_loaded(cls, path), load_drafter(path, target)[0], ids, feats, 4)
    return worst


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--deepspec", required=True, help="a checkout of deepseek-ai/DeepSpec")
    ap.add_argument("--target", help="target folder (with --draft and --tasks: the evaluation check)")
    ap.add_argument("--draft")
    ap.add_argument("--tasks", help="folder of DeepSpec {'turns'} task files")
    ap.add_argument("--samples", type=int, default=8)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    args = ap.parse_args()
    sys.path.insert(0, str(Path(args.deepspec).resolve()))
    import transformers

    result = {"transformers": transformers.__version__}
    if args.target:
        result["evaluation"] = evaluation(args)
    result["layouts"] = layouts() | gemma4_layouts()
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
