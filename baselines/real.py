"""``real``: real training images of the teacher's dataset, the upper reference.

Data-free quantization and distillation are judged against the same procedure run on real
data. This source draws, for each requested target class, training images of that class from
``smi.data.load_dataset(spec, 'train', teacher.data_config)`` and returns them in pixel space
(denormalised with the teacher's mean/std, clipped to [0, 1]) with full keep masks.

Selection is deterministic by seed: each class's training images are put in a seeded random
order and the batch takes them in that order, so within a batch no image repeats until a class
runs out (then its order is reused from the start). Batches are drawn independently; give the
``real`` source one batch (``batch_size >= num_images``) to avoid repeats across batches.
"""

from __future__ import annotations

import time
from typing import Any

import torch
from torch.utils.data import Dataset

from baselines._reference import reference_result
from smi.errors import SMIError
from smi.inversion import InversionResult
from smi.methods.registry import InversionMethod, InversionRequest, register_method
from smi.types import Teacher

SPLIT = "train"


def dataset_labels(dataset: Dataset) -> torch.Tensor:
    """Labels of every item of a suite dataset without decoding its images where possible."""
    labels = getattr(dataset, "labels", None)
    if isinstance(labels, torch.Tensor):
        return labels.long()
    samples = getattr(dataset, "samples", None)
    if samples is not None:
        return torch.tensor([int(label) for _, label in samples], dtype=torch.long)
    return torch.tensor([int(dataset[i][1]) for i in range(len(dataset))], dtype=torch.long)  # type: ignore[arg-type]


def pick_indices(labels: torch.Tensor, targets: torch.Tensor, seed: int) -> torch.Tensor:
    """Dataset indices, one per target, each of the target's class (seeded order, see module doc).

    Raises:
        SMIError: If a target class has no training image.
    """
    generator = torch.Generator().manual_seed(seed)
    chosen = torch.empty(targets.shape[0], dtype=torch.long)
    for cls in torch.unique(targets).tolist():
        pool = (labels == cls).nonzero(as_tuple=True)[0]
        if pool.numel() == 0:
            raise SMIError(
                f"the training split has no image of class {cls}; the teacher's classes do not match the dataset."
            )
        order = pool[torch.randperm(pool.numel(), generator=generator)]
        slots = (targets == cls).nonzero(as_tuple=True)[0]
        chosen[slots] = order[torch.arange(slots.numel()) % order.numel()]
    return chosen


@register_method("real")
class RealImages(InversionMethod):
    """Real training images of the target classes, seeded choice (needs --dataset-spec)."""

    synthesizes = False

    def __init__(self, params: Any) -> None:
        super().__init__(params)
        # The dataset and its labels are loaded once and reused by every batch of a job.
        self._cache: tuple[Any, Dataset, torch.Tensor] | None = None

    def _dataset(self, spec: Any, teacher: Teacher) -> tuple[Dataset, torch.Tensor]:
        from smi.data import load_dataset

        key = (spec, tuple(teacher.input_size), tuple(teacher.data_config["mean"]), tuple(teacher.data_config["std"]))
        if self._cache is None or self._cache[0] != key:
            dataset = load_dataset(spec, SPLIT, teacher.data_config)
            self._cache = (key, dataset, dataset_labels(dataset))
        return self._cache[1], self._cache[2]

    def invert(self, request: InversionRequest) -> list[InversionResult]:
        if request.dataset_spec is None:
            raise SMIError(
                "method 'real' draws training images of the teacher's dataset, but no dataset was given; "
                "pass --dataset-spec '{\"name\": ...}' (the spec the teacher was trained on)."
            )
        start = time.perf_counter()
        teacher = request.teacher
        dataset, labels = self._dataset(request.dataset_spec, teacher)
        targets = request.targets.cpu().long()
        if int(targets.max()) >= teacher.num_classes:
            raise SMIError(f"target class {int(targets.max())} is outside the teacher's {teacher.num_classes} classes.")
        index = pick_indices(labels, targets, request.seed)
        images = torch.stack([dataset[int(i)][0] for i in index])  # type: ignore[index]
        if tuple(images.shape[1:]) != tuple(teacher.input_size):
            raise SMIError(
                f"dataset images have size {tuple(images.shape[1:])} "
                f"but the teacher expects {tuple(teacher.input_size)}; "
                "check the dataset spec and the teacher's data config."
            )
        pixels = teacher.denormalize(images.float()).clamp(0, 1)
        return [reference_result(pixels, targets, teacher, time.perf_counter() - start)]
