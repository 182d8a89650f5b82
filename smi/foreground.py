"""Foreground precision of CLS-attention patch stopping, on real images with known masks.

Sparse Model Inversion (Hu et al., ICML 2024) claims that the last block's CLS attention
singles out the foreground, so stopping the lowest-scoring patches keeps the object and drops
the background. On ``shapes`` test images the truth is known: this module applies the same
stopping rule as the inversion loop - forward the active patches, score them by CLS attention,
and let the inversion's own policy (:class:`smi.inversion.policies.AttentionStopping`) stop the lowest
fraction, repeated on the remaining ones - and compares the kept patches with the ground-truth
mask. A patch counts as foreground when at least half its pixels are. Random stopping
(:class:`smi.inversion.policies.RandomStopping`, seeded) is the baseline; its expected precision is the
foreground fraction.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from smi.errors import SMIError
from smi.inversion.policies import AttentionStopping, RandomStopping, ScheduledStopping
from smi.inversion.schedule import StoppingSchedule
from smi.sparse_vit import TokenSubsetViT, mask_to_positions
from smi.types import Teacher

#: A patch is foreground when at least this fraction of its pixels is.
FOREGROUND_PIXEL_FRACTION = 0.5


def patch_foreground(tsv: TokenSubsetViT, masks: torch.Tensor) -> torch.Tensor:
    """Foreground patches (B, N) from pixel masks (B, H, W)."""
    fraction = tsv.patchify(masks[:, None].float()).flatten(2).mean(dim=2)
    return fraction >= FOREGROUND_PIXEL_FRACTION


def stop_by_attention(tsv: TokenSubsetViT, images: torch.Tensor, schedule: StoppingSchedule) -> list[torch.Tensor]:
    """Apply the stopping steps with CLS-attention scores (SMI's :class:`AttentionStopping`).

    Args:
        tsv: The teacher's token-subset forward.
        images: Normalised images (B, C, H, W).
        schedule: The stopping steps (their order and ratios; images are not optimised here).

    Returns:
        The kept grid positions (B, count) after each step (sorted row-major).
    """

    def scores(active: torch.Tensor) -> torch.Tensor:
        positions = mask_to_positions(active)
        attention = tsv.forward(images, positions, return_cls_attention=True).cls_attention
        assert attention is not None
        return torch.full(active.shape, float("-inf"), device=active.device).scatter_(1, positions, attention)

    active = torch.ones(images.shape[0], tsv.num_patches, dtype=torch.bool, device=images.device)
    return _apply(AttentionStopping(schedule), active, scores, torch.Generator())


def stop_at_random(
    num_images: int, num_patches: int, schedule: StoppingSchedule, gen: torch.Generator
) -> list[torch.Tensor]:
    """The same steps with uniformly random scores (:class:`RandomStopping`, the baseline)."""
    active = torch.ones(num_images, num_patches, dtype=torch.bool)
    return _apply(RandomStopping(schedule), active, lambda _active: None, gen)


def _apply(policy: ScheduledStopping, active: torch.Tensor, scores: Any, gen: torch.Generator) -> list[torch.Tensor]:
    """Run the policy's decisions in order; the kept positions after each one."""
    kept = []
    for iteration in policy.schedule.iterations:
        active = policy.decide(iteration, active, scores(active) if policy.needs_attention else None, gen).active
        kept.append(mask_to_positions(active))
    return kept


def _precision_recall(positions: torch.Tensor, fg: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image precision and recall (NaN recall where an image has no foreground patch)."""
    hits = fg.gather(1, positions.to(fg.device)).sum(dim=1).float()
    precision = hits / positions.shape[1]
    fg_count = fg.sum(dim=1).float()
    recall = torch.where(fg_count > 0, hits / fg_count.clamp(min=1), torch.full_like(hits, float("nan")))
    return precision, recall


@torch.no_grad()
def foreground_precision(
    teacher: Teacher,
    dataset: Dataset,
    schedule: StoppingSchedule,
    num_images: int | None = None,
    batch_size: int = 128,
    device: torch.device | str = "cpu",
    seed: int = 0,
    progress: bool = True,
) -> dict[str, Any]:
    """Precision and recall of the kept patches against the foreground masks.

    Args:
        teacher: The teacher (a timm ViT with a class token).
        dataset: Items ``(image, label, fg_mask)`` (``load_dataset(..., with_masks=True)``).
        schedule: The stopping steps (only their number and ratios matter here).
        num_images: Evaluate the first this many images; all if ``None``.
        batch_size: Images per forward.
        device: Compute device.
        seed: Seed of the random-stopping baseline.
        progress: Show tqdm progress on stderr.

    Returns:
        Final-step ``precision``, ``recall``, ``random_precision``, ``random_recall``,
        ``fg_fraction``, ``kept_patches``, ``num_patches``, ``num_images``, and ``steps``: the
        same figures after every step.
    """
    if not schedule.iterations:
        raise SMIError("the stopping schedule has no steps; give at least one iteration.")
    tsv = TokenSubsetViT(teacher.model).to(device).eval()
    total = len(dataset) if num_images is None else min(num_images, len(dataset))
    if total < 1:
        raise SMIError("no images to evaluate; --num-images must be at least 1.")
    counts = schedule.kept_counts(tsv.num_patches)
    gen = torch.Generator().manual_seed(seed)
    sums = {k: torch.zeros(len(counts) - 1, dtype=torch.float64) for k in ("p", "r", "rp", "rr", "nr")}
    fg_sum = 0.0
    bar = tqdm(total=total, desc="foreground", unit="img", disable=not progress)
    for start in range(0, total, batch_size):
        items = [dataset[i] for i in range(start, min(start + batch_size, total))]
        if len(items[0]) < 3:
            raise SMIError("the dataset gives no foreground masks; load it with with_masks=True (shapes only).")
        images = torch.stack([it[0] for it in items]).to(device)
        fg = patch_foreground(tsv, torch.stack([it[2] for it in items]).to(device)).cpu()
        fg_sum += float(fg.float().mean(dim=1).sum())
        attention = stop_by_attention(tsv, images, schedule)
        random = stop_at_random(len(items), tsv.num_patches, schedule, gen)
        for step, (kept, rand) in enumerate(zip(attention, random)):
            p, r = _precision_recall(kept.cpu(), fg)
            rp, rr = _precision_recall(rand, fg)
            valid = ~torch.isnan(r)
            sums["p"][step] += float(p.sum())
            sums["rp"][step] += float(rp.sum())
            sums["r"][step] += float(r[valid].sum())
            sums["rr"][step] += float(rr[valid].sum())
            sums["nr"][step] += float(valid.sum())
        bar.update(len(items))
    bar.close()
    nr = sums["nr"].clamp(min=1)
    steps = [
        {
            "kept_patches": counts[i + 1],
            "precision": float(sums["p"][i] / total),
            "recall": float(sums["r"][i] / nr[i]),
            "random_precision": float(sums["rp"][i] / total),
            "random_recall": float(sums["rr"][i] / nr[i]),
        }
        for i in range(len(counts) - 1)
    ]
    return {
        **steps[-1],
        "fg_fraction": fg_sum / total,
        "num_patches": tsv.num_patches,
        "num_images": total,
        "steps": steps,
    }
