"""Losslessness of speculative verification: emitted tokens follow the target, whatever the policy
(when the policy respects the early stop), tested by chi-square on a 4-token vocabulary.

The toy target is a Markov chain P(x_t | x_{t-1}); the draft another chain Q. Confidences, as in
DSpark, depend on the previous (drafted) token. 200,000 sequences per case, fixed seeds; the test
asks p > 1e-3 for lossless variants and p < 1e-6 for deliberately biased ones.
"""

import numpy as np
import pytest
import torch
from scipy.stats import chisquare

from dsbench.core.policies import Policy, dspark_lengths, schedule
from dsbench.speculative.sampling import stop_inside_drafts, verify

V = 4
P = torch.tensor(
    [[0.50, 0.20, 0.20, 0.10], [0.10, 0.60, 0.20, 0.10], [0.25, 0.25, 0.25, 0.25], [0.05, 0.15, 0.30, 0.50]]
)
Q = torch.tensor(
    [[0.30, 0.30, 0.20, 0.20], [0.20, 0.50, 0.10, 0.20], [0.40, 0.10, 0.40, 0.10], [0.10, 0.10, 0.20, 0.60]]
)
CONF = np.array([0.9, 0.6, 0.3, 0.8])  # confidence of the next draft given the previous token
N = 200_000


def _round(anchor, gamma, lengths_fn, gen, verify_fn=verify):
    """One speculative round for N sequences; returns the emitted tokens (N, <= gamma + 1) as a list of rows."""
    n = len(anchor)
    drafts = torch.empty((n, gamma), dtype=torch.long)
    prev = anchor
    for k in range(gamma):
        prev = torch.multinomial(Q[prev], 1, generator=gen)[:, 0]
        drafts[:, k] = prev
    chain = torch.cat([anchor[:, None], drafts], 1)
    p = P[chain]  # (N, gamma + 1, V): target given each prefix's last token
    q = Q[chain[:, :gamma]]
    conf = CONF[chain[:, :gamma].numpy()]  # c_k depends on the token before draft k, never on draft k
    lengths = torch.as_tensor(lengths_fn(conf))
    acc, nxt = verify_fn(p, q, drafts, lengths, gen)
    return drafts, acc, nxt


def _first_two(lengths_fn, gamma=3, seed=0, verify_fn=verify):
    gen = torch.Generator().manual_seed(seed)
    anchor = torch.zeros(N, dtype=torch.long)
    out = torch.full((N, 2), -1, dtype=torch.long)
    filled = torch.zeros(N, dtype=torch.long)
    while (filled < 2).any():
        drafts, acc, nxt = _round(anchor, gamma, lengths_fn, gen, verify_fn)
        emitted = torch.cat([drafts, nxt[:, None]], 1)
        count = acc + 1
        for j in range(gamma + 1):  # append emitted[:, j] where j < count
            take = (j < count) & (filled < 2)
            out[take, filled[take]] = torch.where(j == acc[take], nxt[take], emitted[take, j])
            filled += take.long()
        anchor = nxt  # the round's next token is the last one emitted, and the next round's anchor
    return out


def _pvalue(pairs):
    observed = np.bincount((pairs[:, 0] * V + pairs[:, 1]).numpy(), minlength=V * V)
    expected = (P[0][:, None] * P).reshape(-1).numpy() * len(pairs)
    return chisquare(observed, expected).pvalue


# Seconds by batch tokens (R = 1), chosen so that Algorithm 1 verifies 0, 1, 2 or 3 drafts
# depending on the confidences, and differs from every threshold rule on 25-88 % of contexts.
STEP = np.array([1.0, 1.0, 1.3, 1.75, 2.1])


@pytest.mark.parametrize(
    "name,lengths_fn",
    [
        ("fixed", lambda c: schedule(Policy("fixed"), c[:, None, :])[:, 0]),
        ("fixed:1", lambda c: schedule(Policy("fixed", 1), c[:, None, :])[:, 0]),
        ("threshold:0.5", lambda c: schedule(Policy("threshold", 0.5), c[:, None, :])[:, 0]),
        ("dspark", lambda c: dspark_lengths(c[:, None, :], STEP)[:, 0]),
        ("none", lambda c: np.zeros(len(c), dtype=np.int64)),
    ],
)
def test_emitted_tokens_follow_the_target(name, lengths_fn):
    pairs = _first_two(lengths_fn)
    assert _pvalue(pairs) > 1e-3, name


def test_dspark_policy_really_varies_lengths_here():
    """Over every context of three tokens, the scheduler picks every length 0..3 and is not a
    threshold rule in disguise (else the dspark case above would test nothing new)."""
    from dsbench.core.policies import threshold_lengths

    c = CONF[np.array(np.meshgrid(range(V), range(V), range(V))).reshape(3, -1).T]
    lengths = dspark_lengths(c[:, None, :], STEP)[:, 0]
    assert set(lengths.tolist()) == {0, 1, 2, 3}
    for t in (0.3, 0.5, 0.6, 0.8, 0.9):
        assert np.mean(lengths != threshold_lengths(c, t)) > 0.2


def test_search_past_a_non_improvement_is_biased():
    """Paper Appendix A: with confidences that depend on the drafted token, a full search (no early
    stop) verifies draft 1 only when draft 1 makes draft 2 look good — and the output is biased."""
    step = np.array([1.0, 1.0, 1.6, 1.62])

    def conf_fn(c):  # c_1 fixed, c_2 from draft 1 (through CONF via the chain), sharpened
        c = c.copy()
        c[:, 0] = 0.5
        c[:, 1] = np.where(c[:, 1] > 0.85, 0.95, 0.05)
        return c

    greedy = _first_two(lambda c: dspark_lengths(conf_fn(c)[:, None, :], step)[:, 0], gamma=2)
    full = _first_two(lambda c: dspark_lengths(conf_fn(c)[:, None, :], step, early_stop=False)[:, 0], gamma=2)
    assert _pvalue(greedy) > 1e-3
    assert _pvalue(full) < 1e-6


def test_skipping_the_residual_is_caught():
    def biased_verify(p, q, drafts, lengths, gen):
        acc, _ = verify(p, q, drafts, lengths, gen)
        nxt = torch.multinomial(p[torch.arange(len(acc)), acc], 1, generator=gen)[:, 0]  # p instead of the residual
        return acc, nxt

    pairs = _first_two(lambda c: schedule(Policy("fixed"), c[:, None, :])[:, 0], verify_fn=biased_verify)
    assert _pvalue(pairs) < 1e-6


def test_verify_counts_and_bonus():
    gen = torch.Generator().manual_seed(0)
    p = torch.zeros(3, 3, 2)
    p[..., 0] = 1.0  # target always says token 0
    q = torch.zeros(3, 2, 2)
    q[..., 0] = 1.0
    drafts = torch.tensor([[0, 0], [0, 1], [1, 0]])
    acc, nxt = verify(p, q, drafts, torch.tensor([2, 2, 1]), gen)
    assert acc.tolist() == [2, 1, 0] and nxt.tolist() == [0, 0, 0]
    assert stop_inside_drafts(drafts, acc, {1}).tolist() == [-1, -1, -1]
    assert stop_inside_drafts(drafts, torch.tensor([2, 2, 1]), {1}).tolist() == [-1, 2, 1]
