"""Training and evaluation of teachers: AdamW, linear warm-up then cosine decay, light augmentation.

The recipe (``smi.teachers.spec.Recipe``) is the nanoGPT-style CPU recipe of the suite's
default teachers; optimiser and schedule come from timm (``create_optimizer_v2``, which keeps
biases, norms and position embeddings out of weight decay, and ``CosineLRScheduler``, stepped
per update). The final epoch is the teacher: the test split is only ever evaluated, never used
to select anything.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from smi.accuracy import TOP_K, count_topk_hits
from smi.data.tensors import TensorImageDataset
from smi.teachers.spec import Recipe

_WARMUP_LR_FRACTION = 0.01  # warm-up starts at this fraction of the peak learning rate


def augment(images: torch.Tensor, recipe: Recipe, gen: torch.Generator) -> torch.Tensor:
    """Random whole-pixel translation (edges replicated), optional horizontal flip, optional Gaussian noise."""
    b, _, h, w = images.shape
    max_dy, max_dx = int(recipe.shift * h), int(recipe.shift * w)
    if max_dy or max_dx:
        pad = (max_dx, max_dx, max_dy, max_dy)
        padded = F.pad(images, pad, mode="replicate")
        dy = torch.randint(0, 2 * max_dy + 1, (b,), generator=gen)
        dx = torch.randint(0, 2 * max_dx + 1, (b,), generator=gen)
        rows = (dy[:, None] + torch.arange(h)[None]).to(images.device)  # (B, H)
        cols = (dx[:, None] + torch.arange(w)[None]).to(images.device)  # (B, W)
        batch = torch.arange(b, device=images.device)[:, None, None]
        images = padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)
    if recipe.hflip:
        flip = (torch.rand(b, generator=gen) < 0.5).to(images.device)
        images = torch.where(flip[:, None, None, None], images.flip(-1), images)
    if recipe.noise_std > 0:
        # Drawn on the CPU generator so that the noise depends on the seed alone, not the device.
        noise = torch.randn(images.shape, generator=gen).to(images.device)
        images = images + recipe.noise_std * noise
    return images.contiguous()


def batches(
    dataset: Dataset, batch_size: int, shuffle: bool, gen: torch.Generator, num_workers: int = 0
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """``(images, labels)`` batches; in-memory datasets are sliced, others use a DataLoader."""
    if isinstance(dataset, TensorImageDataset):
        n = len(dataset)
        order = torch.randperm(n, generator=gen) if shuffle else torch.arange(n)
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            yield dataset.images[idx], dataset.labels[idx]
        return
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, generator=gen, num_workers=num_workers)
    for item in loader:
        yield item[0], item[1]


def fit(
    model: nn.Module, train_set: Dataset, recipe: Recipe, device: torch.device, seed: int, progress: bool = True
) -> dict[str, Any]:
    """Train ``model`` in place with ``recipe``.

    Returns:
        ``train_time_s`` (wall), ``train_cpu_time_s`` (process CPU), ``steps``, and the
        per-epoch ``history`` of mean training loss and accuracy (%).
    """
    from timm.optim import create_optimizer_v2
    from timm.scheduler import CosineLRScheduler

    gen = torch.Generator().manual_seed(seed)
    model.to(device).train()
    optimizer = create_optimizer_v2(model, opt=recipe.optimizer, lr=recipe.lr, weight_decay=recipe.weight_decay)
    steps_per_epoch = -(-len(train_set) // recipe.batch_size)
    total = recipe.epochs * steps_per_epoch
    scheduler = CosineLRScheduler(
        optimizer,
        t_initial=total,
        lr_min=recipe.min_lr,
        warmup_t=int(recipe.warmup_epochs * steps_per_epoch),
        warmup_lr_init=recipe.lr * _WARMUP_LR_FRACTION,
        t_in_epochs=False,
    )
    history: list[dict[str, float]] = []
    step = 0
    wall, cpu = time.perf_counter(), time.process_time()
    epochs = tqdm(range(recipe.epochs), desc="train teacher", unit="epoch", disable=not progress)
    for epoch in epochs:
        loss_sum, correct, seen = 0.0, 0, 0
        for images, labels in batches(train_set, recipe.batch_size, True, gen, recipe.num_workers):
            images, labels = augment(images.to(device), recipe, gen), labels.to(device)
            logits = model(images)
            loss = F.cross_entropy(logits, labels, label_smoothing=recipe.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if recipe.grad_clip:
                nn.utils.clip_grad_norm_(model.parameters(), recipe.grad_clip)
            optimizer.step()
            step += 1
            scheduler.step_update(step)
            loss_sum += float(loss.detach()) * labels.shape[0]
            correct += int((logits.argmax(1) == labels).sum())
            seen += labels.shape[0]
        history.append({"epoch": epoch + 1, "loss": loss_sum / seen, "train_acc": 100.0 * correct / seen})
        epochs.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{100.0 * correct / seen:.1f}")
    model.eval()
    return {
        "train_time_s": time.perf_counter() - wall,
        "train_cpu_time_s": time.process_time() - cpu,
        "steps": step,
        "history": history,
    }


@torch.no_grad()
def evaluate(
    model: nn.Module, dataset: Dataset, batch_size: int = 256, device: torch.device | str = "cpu", num_workers: int = 0
) -> dict[str, float]:
    """Top-1 and top-5 accuracy (%) of ``model`` on ``dataset`` (top-5 is top-k for fewer classes).

    Returns:
        ``top1``, ``top5`` in percent and ``num_images``.
    """
    was_training = model.training
    model.eval()
    hits = {k: 0 for k in TOP_K}
    seen = 0
    for images, labels in batches(dataset, batch_size, False, torch.Generator(), num_workers):
        for k, count in count_topk_hits(model(images.to(device)), labels.to(device)).items():
            hits[k] += count
        seen += labels.shape[0]
    model.train(was_training)
    if seen == 0:
        return {"top1": float("nan"), "top5": float("nan"), "num_images": 0}
    return {"top1": 100.0 * hits[1] / seen, "top5": 100.0 * hits[5] / seen, "num_images": seen}
