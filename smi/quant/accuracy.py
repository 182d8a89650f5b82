"""Top-1 / top-5 accuracy of a logits function on a real test split.

Both evaluators (quantization and distillation) score every model - the floating-point
teacher, its quantized copy, each student - with this one function, so their figures are
computed identically and can be compared point for point.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from smi.accuracy import TOP_K, count_topk_hits
from smi.errors import SMIError


@torch.no_grad()
def evaluate_logits(
    logits_fn: Callable[[torch.Tensor], torch.Tensor],
    dataset: Dataset,
    batch_size: int,
    device: torch.device | str,
    desc: str = "evaluate",
    progress: bool = True,
) -> dict[str, float]:
    """Accuracy of ``logits_fn`` over ``dataset``, in percent.

    Args:
        logits_fn: Maps a batch of normalised images (B, C, H, W) on ``device`` to logits.
        dataset: Yields ``(image, label)`` (extra items, such as a foreground mask, are ignored).
        batch_size: Images per forward.
        device: Where the images are sent.
        desc: Progress-bar label.
        progress: Show a progress bar on stderr.

    Returns:
        ``{'top1': ..., 'top5': ..., 'num_images': ...}``; top-5 is top-``num_classes`` when there
        are fewer than five classes.
    """
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0)
    correct = {k: 0 for k in TOP_K}
    total = 0
    for batch in tqdm(loader, desc=desc, leave=False, disable=not progress):
        images, labels = batch[0].to(device), batch[1].to(device)
        for k, hits in count_topk_hits(logits_fn(images), labels, TOP_K).items():
            correct[k] += hits
        total += labels.numel()
    if total == 0:
        raise SMIError("the evaluation split is empty; check the dataset spec and its data folder.")
    return {"top1": 100.0 * correct[1] / total, "top5": 100.0 * correct[5] / total, "num_images": total}
