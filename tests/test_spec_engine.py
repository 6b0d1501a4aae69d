"""In-process speculative decoding on a tiny random-weight Qwen3 target with block drafters."""

import numpy as np
import pytest
import torch

from dsbench.core.policies import Policy
from dsbench.profile.measure import build_model, load_hf_config
from dsbench.spec.drafters import build_drafter
from dsbench.spec.engine import SpecDecoder


@pytest.fixture(scope="module")
def target():
    cfg = load_hf_config("tiny-qwen3")
    return build_model(cfg, cfg.num_hidden_layers, "cpu", torch.float32)


def _plain_greedy(target, prompt, n):
    ids = torch.tensor([prompt])
    with torch.inference_mode():
        out = target.generate(ids, max_new_tokens=n, do_sample=False, min_new_tokens=n, eos_token_id=None, pad_token_id=0)
    return out[0, len(prompt):].tolist()


@pytest.mark.parametrize("method,policy", [("dflash", Policy("fixed")), ("dspark", Policy("fixed")), ("eagle3", Policy("fixed")),
                                           ("eagle3", Policy("fixed", 2)), ("mtp-1", Policy("fixed")),
                                           ("dspark", Policy("threshold", 0.5)), ("dspark", Policy("dspark")), (None, Policy("fixed"))])
def test_greedy_output_equals_plain_target_decoding(target, method, policy):
    torch.manual_seed(0)
    drafter = build_drafter(method, target.config).eval() if method else None
    verify_s = np.linspace(0.01, 0.02, 64)
    dec = SpecDecoder(target, drafter, gamma=5, policy=policy, verify_s=verify_s, temperature=0.0)
    prompt = [5, 17, 99, 3, 250, 1024, 7]
    tokens, log = dec.generate(prompt, 40)
    assert tokens == _plain_greedy(target, prompt, 40)
    assert sum(log.committed) + 1 >= 40  # every token accounted for by rounds (+ the prefill token)
    if method:
        full = 1 if method == "mtp-1" else 2 if policy.param == 2 else 5
        if policy.kind == "fixed":
            assert set(log.proposal) == {full}
        else:
            assert max(log.proposal) <= full
        assert all(0 <= a <= p for a, p in zip(log.accepted, log.proposal))


def test_drafter_that_copies_the_target_is_always_accepted(target):
    """A 'drafter' whose proposals are the target's own greedy continuation gets every draft
    accepted: tau = gamma + 1 per round (checks the bookkeeping of accepted counts)."""
    prompt = [11, 12, 13]
    truth = _plain_greedy(target, prompt, 30)

    class Oracle(torch.nn.Module):
        num_cache_layers = 0

        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))
            self.seen = 0

        def propose(self, tokens, features, start, gamma, caches, temperature=1.0, lengths=None):
            k = int(start[0]) - len(prompt)  # tokens generated so far before the anchor... anchor = truth[k]
            nxt = truth[k + 1 : k + 1 + gamma] + [0] * gamma
            d = torch.tensor([nxt[:gamma]])
            logits = torch.full((1, gamma, target.config.vocab_size), -1e4)
            logits.scatter_(-1, d[..., None], 0.0)
            return d, logits, None

    dec = SpecDecoder(target, Oracle(), gamma=4, temperature=0.0)
    tokens, log = dec.generate(prompt, 21)
    assert tokens == truth[:21]
    assert log.accepted[:4] == [4, 4, 4, 4] and log.committed[:4] == [5, 5, 5, 5]


@pytest.mark.parametrize("method", ["dflash", "dspark", "eagle3", "mtp-1", None])
def test_batched_rows_decode_as_if_alone(target, method):
    """Sequences of different lengths share one target pass per round; they join mid-flight, one is
    cancelled (its row is refilled by the last), and each still decodes exactly as plain greedy
    decoding of it alone would."""
    torch.manual_seed(1)
    drafter = build_drafter(method, target.config).eval() if method else None
    dec = SpecDecoder(target, drafter, gamma=4, policy=Policy("dspark"), verify_s=lambda r: np.linspace(0.01, 0.03, r * 5 + 1),
                      temperature=0.0, max_len=256)
    prompts = [[5, 17, 99], [3, 250, 1024, 7, 8, 9, 10], [42], [7, 7, 7, 7], [300, 301]]
    first = dec.start_many(prompts[:3])
    dec.step_all()
    dec.step_all()
    late = dec.start_many(prompts[3:])
    dec.release(first[0])  # cancelled: the last row moves into row 0
    assert [s.slot for s in dec.active] == list(range(4))
    sessions = first[1:] + late
    while any(len(s.tokens) < 30 for s in sessions):
        for s in [s for s in sessions if len(s.tokens) >= 30 and s.slot is not None]:
            dec.release(s)
        dec.step_all()
    for p, s in zip(prompts[1:], sessions):
        assert s.tokens[:30] == _plain_greedy(target, p, 30), p
    assert len(first[0].tokens) < 30 and first[0].tokens == _plain_greedy(target, prompts[0], len(first[0].tokens))
