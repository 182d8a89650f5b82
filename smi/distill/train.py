"""Knowledge transfer from a teacher to a student on synthetic images.

The suite's knowledge-transfer protocol (``protocol: suite``; the official SMI code's is
:mod:`smi.distill.official`, differences in docs/protocols.md): the student learns to match
the teacher's softened predictions (KL divergence at temperature T, 20 as in the official
code, scaled by T^2 as in Hinton et al., 2015) on a method's synthetic images. Teacher
and student both run on the kept tokens of sparse images (:class:`~smi.sparse_vit.TokenSubsetViT`),
so stopped (black) patches are never seen by either. Each batch is augmented (whole-patch
roll / flip, optional whole-patch erasing) and then labelled by the teacher's logits on the
augmented input, so augmentation never invents a label.

The student is evaluated on the real test split every ``eval_every`` epochs and after the last;
the whole curve is kept and the reported figure is the *final* epoch's (the test set never
selects an epoch).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset
from tqdm import tqdm

from smi.distill.augment import PatchAugment, PatchErase
from smi.distill.config import DistillRecipe, StudentSpec
from smi.distill.student import build_student
from smi.imageset import ImageSet
from smi.quant.accuracy import evaluate_logits
from smi.quant.calibrate import select_images
from smi.sparse_vit import TokenSubsetViT
from smi.types import Teacher


@dataclass
class DistillResult:
    """What a distillation run produced.

    Attributes:
        student: The trained student (eval mode).
        curve: One dict per evaluated epoch: ``epoch``, ``train_loss`` (that epoch's mean),
            ``test_top1``, ``test_top5``, ``wall_time_s`` (cumulative training time, evaluation
            excluded).
        num_images: Synthetic images trained on.
        teacher_accuracy: The teacher's accuracy on the test split (same metric code).
        extra: Final-epoch accuracy of the student on the extra splits (by name).
    """

    student: nn.Module
    curve: list[dict[str, float]]
    num_images: int
    teacher_accuracy: dict[str, float]
    extra: dict[str, dict[str, float]] = field(default_factory=dict)

    @property
    def final(self) -> dict[str, float]:
        """The last epoch's record (the reported one)."""
        return self.curve[-1]


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(teacher || student) of the temperature-softened distributions, times T^2."""
    log_p_student = F.log_softmax(student_logits / temperature, dim=1)
    log_p_teacher = F.log_softmax(teacher_logits / temperature, dim=1)
    kl = F.kl_div(log_p_student, log_p_teacher, log_target=True, reduction="batchmean")
    return kl * temperature**2


def distill(
    teacher: Teacher,
    image_set: ImageSet,
    student_spec: StudentSpec,
    recipe: DistillRecipe,
    test_set: Dataset,
    seed: int,
    device: torch.device | str,
    extra_test_sets: dict[str, Dataset] | None = None,
    progress: bool = True,
    teacher_accuracy: dict[str, float] | None = None,
) -> DistillResult:
    """Distil ``teacher`` into a new student on ``image_set``; evaluate every ``eval_every`` epochs.

    Args:
        teacher: The teacher (model on ``device``, eval mode).
        image_set: Synthetic images in pixel space with keep masks.
        student_spec: Which student.
        recipe: Training recipe (``num_images`` picks a seeded subset).
        test_set: The real test split, normalised for the teacher.
        seed: Seeds the student's initialisation, the subset, the order and the augmentation.
        device: Compute device.
        extra_test_sets: Further splits evaluated once, after the final epoch.
        progress: Show progress bars on stderr.
        teacher_accuracy: The teacher's accuracy on ``test_set`` when already known (the teacher
            file records it): every student of a teacher shares it, so it is not measured again.

    Returns:
        The trained student, the curve and the final figures.

    Raises:
        SMIError: If the set does not fit the teacher or the student cannot be built.
    """
    teacher_view = TokenSubsetViT(teacher.model)
    image_set.check_compatible(teacher.num_classes, teacher.input_size, teacher_view.grid_size)
    images = select_images(image_set, recipe.num_images or len(image_set), seed)
    student = build_student(student_spec, teacher, seed, device)
    student_view = TokenSubsetViT(student)
    augment = PatchAugment.from_name(recipe.augment, teacher_view.patch_size, recipe.max_shift)
    erase = PatchErase(teacher_view.patch_size, recipe.erase)

    steps_per_epoch = math.ceil(len(images) / recipe.batch_size)
    params = [p for p in student.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=recipe.lr, weight_decay=recipe.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, _warmup_cosine(round(recipe.warmup_epochs * steps_per_epoch), recipe.epochs * steps_per_epoch)
    )
    generator = torch.Generator().manual_seed(seed)
    teacher.model.eval()

    curve: list[dict[str, float]] = []
    train_time = 0.0
    epochs = tqdm(range(1, recipe.epochs + 1), desc="distill", disable=not progress)
    for epoch in epochs:
        start = time.perf_counter()
        student.train()
        loss_sum = 0.0
        order = torch.randperm(len(images), generator=generator)
        for first in range(0, len(images), recipe.batch_size):
            index = order[first : first + recipe.batch_size]
            batch, masks = augment(images.images[index], images.keep_masks[index], generator)
            batch = erase(batch, masks, generator)
            batch, masks = teacher.normalize(batch.to(device)), masks.to(device)
            with torch.no_grad():  # the teacher labels the augmented input
                target = teacher_view.forward_masked(batch, masks)
            loss = kd_loss(student_view.forward_masked(batch, masks), target, recipe.temperature)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            loss_sum += float(loss.detach()) * len(index)
        train_time += time.perf_counter() - start
        if epoch % recipe.eval_every and epoch != recipe.epochs:
            continue
        student.eval()
        acc = evaluate_logits(student, test_set, recipe.eval_batch_size, device, f"evaluate epoch {epoch}", progress)
        curve.append(
            {
                "epoch": epoch,
                "train_loss": loss_sum / len(images),
                "test_top1": acc["top1"],
                "test_top5": acc["top5"],
                "wall_time_s": train_time,
            }
        )
        epochs.set_postfix(loss=f"{curve[-1]['train_loss']:.4f}", top1=f"{acc['top1']:.2f}")

    student.eval()
    extra = {
        name: evaluate_logits(student, split, recipe.eval_batch_size, device, f"evaluate {name}", progress)
        for name, split in (extra_test_sets or {}).items()
    }
    if teacher_accuracy is None:
        teacher_accuracy = evaluate_logits(
            teacher.model, test_set, recipe.eval_batch_size, device, "evaluate teacher", progress
        )
    return DistillResult(student, curve, len(images), dict(teacher_accuracy), extra)


def _warmup_cosine(warmup_steps: int, total_steps: int) -> Any:
    """Learning-rate factor per step: linear warm-up, then cosine decay to zero."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor
