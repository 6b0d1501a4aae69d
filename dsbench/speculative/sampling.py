"""Speculative verification by rejection sampling (Leviathan et al., Algorithm 1; DeepSpec's loop).

Notation as in the paper: p is the target's distribution, q the draft's. For N independent
rounds at once, with g drafts each, of which the policy chose to verify the first `lengths`:

    draft d_i is accepted with probability min(1, p_i(d_i) / q_i(d_i)), all u_i drawn at once,
    accepted = the leading run of accepts among the verified drafts;
    at the first rejection the next token comes from the residual norm(max(p - q, 0)),
    otherwise (all verified drafts accepted, or nothing verified) the bonus comes from p.

Rows: p[:, i] and q[:, i] both predict draft i + 1 (0-based i); p has one more row, the bonus.
Which drafts are verified must not depend on the value of a draft it admits (paper Appendix A):
the policies in core.policies respect that; this function does not check it.
"""

from __future__ import annotations

import torch


def probabilities(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """fp32 probabilities from logits (..., V); one-hot argmax at temperature ~0 (as DeepSpec does)."""
    if temperature < 1e-5:
        return torch.nn.functional.one_hot(logits.argmax(-1), logits.shape[-1]).float()
    return torch.softmax(logits.float() / temperature, -1)


def verify(
    p: torch.Tensor,
    q: torch.Tensor,
    drafts: torch.Tensor,
    lengths: torch.Tensor,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Accepted draft counts (N,) and the next token (N,) for N rounds.

    p (N, g + 1, V) target probabilities at the verify positions; q (N, g, V) the draft
    probabilities each draft was sampled from; drafts (N, g); lengths (N,) drafts to verify.
    """
    n, g, _ = q.shape
    rows = torch.arange(n, device=p.device)
    if g:
        p_d = p[:, :g].gather(-1, drafts[..., None])[..., 0]
        q_d = q.gather(-1, drafts[..., None])[..., 0]
        ratio = (p_d / q_d.clamp_min(1e-8)).clamp(max=1.0)
        u = torch.rand((n, g), generator=generator, device=p.device, dtype=ratio.dtype)
        ok = (u < ratio) & (torch.arange(g, device=p.device)[None, :] < lengths[:, None])
        accepted = ok.long().cumprod(-1).sum(-1)
    else:
        accepted = torch.zeros(n, dtype=torch.long, device=p.device)
    p_next = p[rows, accepted]
    rejected = accepted < lengths
    if g:
        # (not in Algorithm 1) DeepSpec falls back to p when the residual has no mass left
        resid = (p_next - q[rows, accepted.clamp(max=g - 1)]).clamp_min(0)
        mass = resid.sum(-1, keepdim=True)
        resid = torch.where(mass > 1e-8, resid / mass.clamp_min(1e-30), p_next)
        p_next = torch.where(rejected[:, None], resid, p_next)
    nxt = torch.multinomial(p_next, 1, generator=generator)[:, 0]
    return accepted, nxt


def stop_inside_drafts(drafts: torch.Tensor, accepted: torch.Tensor, stop_ids: set[int]) -> torch.Tensor:
    """DeepSpec's rule for a stop token among the accepted drafts: the round ends at it.

    Returns the accepted count cut at the first accepted stop token (its 1-based position), or
    -1 where no accepted draft is a stop token. A cut round commits no bonus token.
    """
    if not stop_ids or drafts.shape[1] == 0:
        return torch.full_like(accepted, -1)
    is_stop = torch.zeros_like(drafts, dtype=torch.bool)
    for s in stop_ids:
        is_stop |= drafts == s
    pos = torch.arange(drafts.shape[1], device=drafts.device)[None, :]
    hit = is_stop & (pos < accepted[:, None])
    first = torch.where(hit.any(-1), hit.float().argmax(-1) + 1, torch.full_like(accepted, -1))
    return first
