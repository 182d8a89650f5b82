"""Foreground precision on *inverted* images, whose true object region is unknown.

On real ``shapes`` images the object mask is known (:mod:`smi.foreground`). An inverted image
has no mask, so the class region is taken from the teacher itself: the **input-gradient
saliency** of the finished image (Simonyan et al., 2014) - per patch, the L2 norm over its
pixels of the gradient of the target class's log-probability with respect to the input - with
the teacher run on *every* patch, stopped (black) ones included, so a stopped patch can be
salient. The region of an image is its ``k`` most salient patches, ``k`` = the number of
patches it keeps; the precision of the kept set is the share of kept patches inside that
region, and a kept set drawn at random scores ``k / N`` on average.

Which patches are "kept": the image's own keep mask for sparse methods; for images that keep
every patch (dense inversion, real images, noise) the stopping of Sparse Model Inversion
(Hu et al., ICML 2024) is applied to the finished image as on real images
(:func:`smi.foreground.stop_by_attention`), so every method is scored on the same number of
patches.

Caveat, stated in docs/evaluators.md: for a sparse method the optimisation ran on the kept
patches only, so the finished image's evidence - and its saliency - lies there by
construction. The random-stopping method (``smi-random``) is the control that shows how much of
the precision is this construction rather than a good choice of patches.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from smi.errors import SMIError
from smi.foreground import stop_by_attention
from smi.imageset import ImageSet
from smi.inversion.schedule import StoppingSchedule
from smi.sparse_vit import TokenSubsetViT
from smi.types import Teacher


def patch_saliency(tsv: TokenSubsetViT, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-patch input-gradient saliency (B, N) of the target class's log-probability.

    Args:
        tsv: The teacher's token-subset view (its model is run on every patch).
        images: Normalised images (B, C, H, W).
        targets: Class per image (B,).
    """
    x = images.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        log_probs = F.log_softmax(tsv.model(x), dim=1)
        picked = log_probs.gather(1, targets.view(-1, 1).to(log_probs.device)).sum()
        (grad,) = torch.autograd.grad(picked, x)
    return tsv.patchify(grad).flatten(2).norm(dim=2)


def top_region(saliency: torch.Tensor, sizes: torch.Tensor) -> torch.Tensor:
    """Bool (B, N): the ``sizes[b]`` highest-saliency patches of each row (ties by index)."""
    order = saliency.argsort(dim=1, descending=True, stable=True)
    ranks = torch.empty_like(order).scatter_(1, order, torch.arange(saliency.shape[1]).expand_as(order).contiguous())
    return ranks < sizes.view(-1, 1)


def kept_precision(kept: torch.Tensor, region: torch.Tensor) -> torch.Tensor:
    """Share of each row's kept patches that lie in its region (B,)."""
    counts = kept.sum(dim=1)
    if bool((counts == 0).any()):
        raise SMIError("an image keeps no patch; its precision is undefined.")
    return (kept & region).sum(dim=1).float() / counts.float()


@torch.no_grad()
def inverted_precision(
    teacher: Teacher,
    image_set: ImageSet,
    schedule: StoppingSchedule,
    batch_size: int = 64,
    device: torch.device | str = "cpu",
) -> dict[str, Any]:
    """Precision of the kept patches of an image set against its saliency region.

    Args:
        teacher: The teacher the set was made from.
        image_set: Images in pixel space with keep masks and targets.
        schedule: The stopping applied to images that keep every patch.
        batch_size: Images per forward/backward.
        device: Compute device.

    Returns:
        ``precision`` (mean), ``precision_std`` (over images), ``chance_precision`` (mean
        ``k / N``), ``kept_patches`` (mean ``k``), ``stopped_after_inversion`` (images whose
        kept set came from applying the stopping to the finished image), ``num_images``.
    """
    tsv = TokenSubsetViT(teacher.model).to(device).eval()
    image_set.check_compatible(teacher.num_classes, teacher.input_size, tsv.grid_size)
    precisions, chance, kept_sizes, posthoc = [], [], [], 0
    for start in range(0, len(image_set), batch_size):
        stop = min(start + batch_size, len(image_set))
        images = teacher.normalize(image_set.images[start:stop].to(device))
        targets = image_set.targets[start:stop].to(device)
        kept = image_set.keep_masks[start:stop].flatten(1).to(device)
        full = kept.all(dim=1)
        if bool(full.any()):
            positions = stop_by_attention(tsv, images[full], schedule)[-1]
            stopped = torch.zeros_like(kept[full]).scatter_(1, positions, True)
            kept = kept.clone()
            kept[full] = stopped
            posthoc += int(full.sum())
        sizes = kept.sum(dim=1)
        region = top_region(patch_saliency(tsv, images, targets), sizes)
        precisions.append(kept_precision(kept, region).cpu())
        chance.append((sizes.float() / tsv.num_patches).cpu())
        kept_sizes.append(sizes.float().cpu())
    p = torch.cat(precisions).double()
    return {
        "precision": float(p.mean()),
        "precision_std": float(p.std()) if p.numel() > 1 else float("nan"),
        "chance_precision": float(torch.cat(chance).double().mean()),
        "kept_patches": float(torch.cat(kept_sizes).double().mean()),
        "stopped_after_inversion": posthoc,
        "num_images": int(p.numel()),
    }


@torch.no_grad()
def proxy_agreement(
    teacher: Teacher,
    images: torch.Tensor,
    labels: torch.Tensor,
    foreground: torch.Tensor,
    batch_size: int = 64,
    device: torch.device | str = "cpu",
) -> float:
    """How well the saliency region finds the object where the truth is known (real images).

    Args:
        teacher: The teacher.
        images: Normalised real images (B, C, H, W).
        labels: Their classes (B,).
        foreground: Bool (B, N) foreground patches (:func:`smi.foreground.patch_foreground`).

    Returns:
        Mean over images with a foreground patch of the share of the ``k`` most salient patches
        that are foreground, ``k`` = the image's foreground patch count (chance: ``k / N``).
    """
    tsv = TokenSubsetViT(teacher.model).to(device).eval()
    shares = []
    for start in range(0, images.shape[0], batch_size):
        fg = foreground[start : start + batch_size].to(device)
        sizes = fg.sum(dim=1)
        saliency = patch_saliency(
            tsv, images[start : start + batch_size].to(device), labels[start : start + batch_size]
        )
        region = top_region(saliency, sizes)
        valid = sizes > 0
        shares.append(((region & fg).sum(dim=1).float()[valid] / sizes[valid].float()).cpu())
    values = torch.cat(shares).double()
    if values.numel() == 0:
        raise SMIError("no image has a foreground patch; the saliency proxy cannot be checked.")
    return float(values.mean())
