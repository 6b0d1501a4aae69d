"""In-process speculative decoding on a tiny random-weight Qwen3 target with block drafters."""

import numpy as np
import pytest
import torch

from dsbench.core.policies import Policy
from dsbench.profile.measure import build_model, load_hf_config
from dsbench.speculative.drafters import NgramDrafter, Proposal, drafter_for
from dsbench.speculative.engine import SpecDecoder
from dsbench.speculative.models import build_draft_model


@pytest.fixture(scope="module")
def target():
    cfg = load_hf_config("tiny-qwen3")
    return build_model(cfg, cfg.num_hidden_layers, "cpu", torch.float32)


def _drafter(method, target, gamma):
    """A random-weight drafter of `method` (or prompt lookup, which needs no model)."""
    if method is None:
        return None
    if method == "ngram":
        return NgramDrafter(target.config.vocab_size, gamma)
    return drafter_for(build_draft_model(method, target.config).eval(), target, gamma=gamma)


def _plain_greedy(target, prompt, n):
    ids = torch.tensor([prompt])
    with torch.inference_mode():
        out = target.generate(
            ids, max_new_tokens=n, do_sample=False, min_new_tokens=n, eos_token_id=None, pad_token_id=0
        )
    return out[0, len(prompt) :].tolist()


@pytest.mark.parametrize(
    "method,policy",
    [
        ("dflash", Policy("fixed")),
        ("dspark", Policy("fixed")),
        ("eagle3", Policy("fixed")),
        ("eagle3", Policy("fixed", 2)),
        ("mtp-1", Policy("fixed")),
        ("dspark", Policy("threshold", 0.5)),
        ("dspark", Policy("dspark")),
        ("ngram", Policy("fixed")),
        (None, Policy("fixed")),
    ],
)
def test_greedy_output_equals_plain_target_decoding(target, method, policy):
    torch.manual_seed(0)
    drafter = _drafter(method, target, 5)
    verify_s = np.linspace(0.01, 0.02, 64)
    dec = SpecDecoder(target, drafter, policy=policy, verify_s=verify_s, temperature=0.0)
    prompt = [5, 17, 99, 3, 250, 1024, 7]
    tokens, log = dec.generate(prompt, 40)
    assert tokens == _plain_greedy(target, prompt, 40)
    assert sum(log.committed) + 1 >= 40  # every token accounted for by rounds (+ the prefill token)
    if method:
        full = 1 if method == "mtp-1" else 2 if policy.param == 2 else 5
        if method == "ngram":  # prompt lookup proposes only where the sequence repeats itself
            assert set(log.proposal) <= set(range(full + 1)) and max(log.proposal) == full
        elif policy.kind == "fixed":
            assert set(log.proposal) == {full}
        else:
            assert max(log.proposal) <= full
        assert all(0 <= a <= p for a, p in zip(log.accepted, log.proposal))


def test_drafter_that_copies_the_target_is_always_accepted(target):
    """A 'drafter' whose proposals are the target's own greedy continuation gets every draft
    accepted: tau = gamma + 1 per round (checks the bookkeeping of accepted counts)."""
    prompt = [11, 12, 13]
    truth = _plain_greedy(target, prompt, 30)

    class Oracle:
        """A drafter that knows the answer: nothing but the protocol (no model, no caches)."""

        gamma, reads_hidden = 4, False
        reserve = move = begin = observe = lambda self, *args: None

        def propose(self, anchors, starts, temperature):
            k = int(starts[0]) - len(prompt)  # the anchor is truth[k]
            d = torch.tensor([(truth[k + 1 : k + 1 + self.gamma] + [0] * self.gamma)[: self.gamma]])
            return Proposal(d, torch.nn.functional.one_hot(d, target.config.vocab_size).float())

    dec = SpecDecoder(target, Oracle(), temperature=0.0)
    tokens, log = dec.generate(prompt, 21)
    assert tokens == truth[:21]
    assert log.accepted[:4] == [4, 4, 4, 4] and log.committed[:4] == [5, 5, 5, 5]


@pytest.mark.parametrize("method", ["dflash", "dspark", "eagle3", "mtp-1", "ngram", None])
def test_batched_rows_decode_as_if_alone(target, method):
    """Sequences of different lengths share one target pass per round; they join mid-flight, one is
    cancelled (its row is refilled by the last), and each still decodes exactly as plain greedy
    decoding of it alone would."""
    torch.manual_seed(1)
    drafter = _drafter(method, target, 4)
    dec = SpecDecoder(
        target,
        drafter,
        policy=Policy("dspark"),
        verify_s=lambda r: np.linspace(0.01, 0.03, r * 5 + 1),
        temperature=0.0,
        max_len=256,
    )
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


def test_ngram_lookup_takes_the_longest_suffix_then_its_earliest_occurrence():
    d = NgramDrafter(vocab=100, gamma=3, min_n=1, max_n=3)
    # suffix [1, 2, 3] occurs at 0 and 5: the earliest wins; shorter matches of [3] at 7 lose to the longer one
    assert d.lookup([1, 2, 3, 9, 8, 1, 2, 3, 7, 3, 1, 2, 3]) == [9, 8, 1]
    assert d.lookup([5, 6, 7, 6]) == [7, 6]  # only [6] matches; the continuation is cut at the sequence's end
    assert d.lookup([1, 2, 3, 4]) == []  # nothing repeats
    assert NgramDrafter(vocab=100, gamma=2, min_n=2, max_n=3).lookup([4, 1, 9, 1]) == []  # [1] is shorter than min_n


def test_ngram_drafts_on_repetitive_text_are_accepted_like_the_target_greedy(target):
    """The random target soon repeats itself, which gives prompt lookup real matches: the round log
    shows full proposals, accepted, and the output is still exactly the target's greedy decoding."""
    prompt = [5, 17, 99, 3] * 6
    dec = SpecDecoder(target, NgramDrafter(target.config.vocab_size, 3), temperature=0.0)
    tokens, log = dec.generate(prompt, 40)
    assert tokens == _plain_greedy(target, prompt, 40)
    assert max(log.proposal) == 3 and sum(log.accepted) > 0
    assert all(0 <= a <= p for a, p in zip(log.accepted, log.proposal))
