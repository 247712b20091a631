"""Linear layers for the few rows of a decode step on the CPU: ``(W @ x.T).T`` instead of ``x @ W.T``.

A MusicGen decode step multiplies a handful of rows (codebooks x clips x takes, doubled with guidance)
by each weight matrix. For such skinny products PyTorch's CPU ``F.linear`` reads the weight less
efficiently than a plain ``mm`` with the weight on the left once there are 16 rows or more (a clip
with guidance and two takes or more, or two clips): 0.70-0.93x its time at 16-64 rows for the
full-size decoder's weights on this project's 2-core CPU, 1.04-1.10x at 8-12 rows and even at 96
(bench/takes.py; BENCHMARKS.md, "Takes"). So ``F.linear`` is kept outside [:data:`MIN_ROWS`, :data:`MAX_ROWS`].
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

MIN_ROWS, MAX_ROWS = 16, 64  # where the weight-on-the-left product is the faster one (bench/takes.py)


class RowsLinear(torch.nn.Module):
    """An ``nn.Linear`` (same weight and bias tensors, not copies) that computes 16-64 rows as ``(W @ x.T).T``."""

    def __init__(self, linear: torch.nn.Linear):
        super().__init__()
        self.weight, self.bias = linear.weight, linear.bias
        self.in_features, self.out_features = linear.in_features, linear.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, x.shape[-1])
        if not MIN_ROWS <= rows.shape[0] <= MAX_ROWS:
            return F.linear(x, self.weight, self.bias)
        out = torch.mm(self.weight, rows.T).T
        if self.bias is not None:
            out = out + self.bias
        return out.reshape(*x.shape[:-1], self.out_features)


def use_rows_linears(model: torch.nn.Module) -> int:
    """Replace the float ``nn.Linear`` layers of the MusicGen decoder (its layers and lm heads) by
    :class:`RowsLinear`, in place; returns how many were replaced."""
    decoder = model.decoder
    count = 0
    for parent in [*decoder.modules()]:
        for name, child in list(parent.named_children()):
            if type(child) is torch.nn.Linear and child.weight.dtype.is_floating_point:
                setattr(parent, name, RowsLinear(child))
                count += 1
    return count
