"""Top-k accuracy counting shared by every evaluation (teachers, quantized models, students)."""

from __future__ import annotations

import torch

#: The accuracies every metrics record reports.
TOP_K: tuple[int, int] = (1, 5)


def count_topk_hits(logits: torch.Tensor, labels: torch.Tensor, ks: tuple[int, ...] = TOP_K) -> dict[int, int]:
    """Samples whose label is among the ``k`` highest logits, for each ``k`` in ``ks``.

    With fewer classes than ``k``, top-``k`` is top-``num_classes`` (every sample counts).
    """
    ranked = logits.topk(min(max(ks), logits.shape[1]), dim=1).indices
    hits = ranked == labels.view(-1, 1)
    return {k: int(hits[:, :k].any(dim=1).sum()) for k in ks}
