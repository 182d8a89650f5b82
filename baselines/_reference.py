"""Shared helper of the reference image sources (``noise``, ``real``).

Reference sources do not optimise anything through the teacher, so their results carry full
keep masks, zero FLOPs, no loss curve and the wall time it took to produce the images; they
flow through the same image-set file, evaluators and tables as the inversion methods.
"""

from __future__ import annotations

import torch

from smi.inversion import InversionResult, InversionStats
from smi.sparse_vit import TokenSubsetViT
from smi.types import Teacher

#: ``memory_kind`` of sources that run no model: there is no inversion memory to report.
NO_MEMORY = "none"


def reference_result(
    images: torch.Tensor, targets: torch.Tensor, teacher: Teacher, wall_time_s: float
) -> InversionResult:
    """Wrap dense pixel-space images of a reference source as an inversion result.

    Args:
        images: (B, C, H, W) in [0, 1].
        targets: (B,) labels.
        teacher: The teacher the images are made for (gives the patch grid).
        wall_time_s: Honest time it took to produce the images.

    Returns:
        A result with all-True keep masks and zero-cost statistics.
    """
    vit = TokenSubsetViT(teacher.model)
    gh, gw = vit.grid_size
    b = int(images.shape[0])
    stats = InversionStats(
        wall_time_s=wall_time_s,
        iterations=0,
        batch_size=b,
        num_patches=vit.num_patches,
        active_tokens=[],
        flops_total=0,
        flops_by_tokens={},
        peak_memory_bytes=0,
        peak_memory_after_last_stop_bytes=0,
        memory_kind=NO_MEMORY,
        loss_curve=[],
        decision_iterations=[],
    )
    masks = torch.ones(b, gh, gw, dtype=torch.bool)
    return InversionResult(images.detach().cpu().float().clamp(0, 1), masks, targets.detach().cpu().long(), stats)
