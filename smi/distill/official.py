"""Knowledge transfer exactly as the official SMI code runs it (``protocol: official``).

Sparse Model Inversion (Hu et al., ICML 2024), official code ``test_kt.py``:

- the student is an ImageNet-pretrained copy of the **teacher's architecture**; every weight is
  frozen and ``reset_classifier`` puts a new head (PyTorch's default ``nn.Linear`` init) for
  the teacher's classes: a linear probe;
- SGD over the student's parameters, lr 0.1 (constant, no schedule), momentum 0.9, weight
  decay 1e-4; loss ``T^2 * KL(softmax(t/T) || softmax(s/T))``, T = 20, batch mean;
- every epoch the inversion method synthesises ``images_per_epoch`` (100) new images in one
  batch into a growing pool (:mod:`smi.distill.pool`: 8-bit, masked), and the student takes
  **one** step on ``batch_size`` (32) images drawn from the whole pool, randomly flipped;
- a drawn batch is normalised with the official ``keep_zero`` normaliser (pixels that are 0
  stay 0), and both networks see only the patches with a non-zero value (the official
  ``find_non_zero_patches``), i.e. stopped patches are dropped from the token sequence;
- the student is evaluated on the test split every epoch; the official code prints the
  **best** accuracy over epochs, which is reported here as the official metric beside the
  final epoch's (a test-set-selected figure, so not the suite's headline number).

The synthesis runs inside this job through :func:`smi.methods.synthesize.synthesize`, one call per
epoch with its own seed, so a run is resumable: every ``checkpoint_every`` epochs the head,
the optimiser, the draw generator, the RNG states and the curve are saved atomically beside
the pool shards, and a restarted job continues from there bit-identically.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset
from tqdm import tqdm

from smi.config import config_hash, to_dict
from smi.distill.config import OfficialRecipe, StudentSpec
from smi.distill.pool import ImagePool
from smi.distill.student import build_student
from smi.errors import SMIError
from smi.inversion import InversionConfig
from smi.io import torch_save
from smi.methods.registry import InversionMethod
from smi.methods.synthesize import synthesize
from smi.quant.accuracy import evaluate_logits
from smi.sparse_vit import TokenSubsetViT
from smi.types import Teacher

#: Seeds of consecutive epochs' syntheses are spread apart so that two jobs never share one.
EPOCH_SEED_STRIDE = 1_000_003
CHECKPOINT_NAME = "checkpoint.pt"
POOL_FOLDER = "pool"


@dataclass
class OfficialResult:
    """What an official-protocol run produced.

    Attributes:
        student: The trained student (eval mode).
        curve: One dict per evaluated epoch: ``epoch``, ``train_loss`` (that epoch's one step),
            ``pool_size``, ``test_top1``, ``test_top5``, ``wall_time_s`` (cumulative synthesis +
            training time, evaluation excluded; not restored bit-identically on resume).
        best: ``{'epoch', 'test_top1', 'test_top5'}`` of the first evaluation with the highest
            top-1 (the official code's printed ``best_top1``).
        pool_size: Images in the pool at the end.
        teacher_accuracy: The teacher on the test split.
        resumed_from: The epoch of the checkpoint the run resumed from (0: a fresh start).
        synthesis_time_s: Wall time spent synthesising (this process only).
    """

    student: nn.Module
    curve: list[dict[str, float]]
    best: dict[str, float]
    pool_size: int
    teacher_accuracy: dict[str, float]
    resumed_from: int
    synthesis_time_s: float

    @property
    def final(self) -> dict[str, float]:
        """The last epoch's record."""
        return self.curve[-1]


def check_official_student(spec: StudentSpec, teacher: Teacher) -> None:
    """The official student is a pretrained copy of the teacher's architecture, trained linearly.

    Raises:
        SMIError: If the spec names another model, another init or full training.
    """
    problems = []
    if spec.model != teacher.model_name:
        problems.append(f"model {spec.model!r} (the teacher is {teacher.model_name!r})")
    if spec.init not in ("checkpoint", "pretrained"):
        problems.append(f"init {spec.init!r} (needs 'pretrained' or 'checkpoint': the pretrained weights)")
    if spec.train != "linear":
        problems.append(f"train {spec.train!r} (needs 'linear')")
    if problems:
        raise SMIError(
            "the official distillation protocol trains a pretrained student of the teacher's own architecture "
            f"as a linear probe; this student has {', '.join(problems)}. Fix the student spec or use protocol 'suite'."
        )


def build_official_student(spec: StudentSpec, teacher: Teacher, seed: int, device: torch.device | str) -> nn.Module:
    """The pretrained body, every weight frozen, then a new head as ``reset_classifier`` makes it."""
    check_official_student(spec, teacher)
    model = build_student(spec, teacher, seed, "cpu")
    for p in model.parameters():
        p.requires_grad_(False)
    torch.manual_seed(seed)
    # The official code freezes the body and then calls reset_classifier: the head is a plain
    # nn.Linear with PyTorch's default init (not timm's), and the only parameter with a gradient.
    model.reset_classifier(teacher.num_classes)
    return model.to(device).train()


def official_kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """The official ``kldiv``: ``kl_div(log_softmax(s/T), softmax(t/T), 'batchmean') * T^2``."""
    log_q = F.log_softmax(student_logits / temperature, dim=1)
    p = F.softmax(teacher_logits / temperature, dim=1)
    return F.kl_div(log_q, p, reduction="batchmean") * (temperature * temperature)


def keep_zero_normalize(pixels: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """The official ``Normalizer(keep_zero=True)``: ``(x - mean) / std``, but values that were 0 stay 0."""
    return ((pixels - mean) / std).masked_fill(pixels == 0, 0.0)


def nonzero_patch_mask(images: torch.Tensor, patch_size: tuple[int, int]) -> torch.Tensor:
    """(B, gh, gw) mask of the patches holding any non-zero value (official ``find_non_zero_patches``)."""
    b, c, h, w = images.shape
    ph, pw = patch_size
    patches = images.reshape(b, c, h // ph, ph, w // pw, pw)
    return (patches != 0).any(dim=5).any(dim=3).any(dim=1)


def epoch_seed(seed: int, epoch: int) -> int:
    """Seed of the synthesis of ``epoch`` (1-based) in the job with ``seed``."""
    return seed * EPOCH_SEED_STRIDE + epoch


def distill_official(
    *,
    teacher: Teacher,
    method: InversionMethod,
    inversion_config: InversionConfig,
    student_spec: StudentSpec,
    recipe: OfficialRecipe,
    test_set: Dataset,
    seed: int,
    device: torch.device | str,
    state_dir: str | Path,
    dataset_spec: Any = None,
    identity: str = "",
    progress: bool = True,
    synthesize_fn: Callable[..., Any] = synthesize,
) -> OfficialResult:
    """Run the official protocol, resuming from ``state_dir`` if it holds a checkpoint of this run.

    Args:
        teacher: The teacher (eval mode, on ``device``).
        method: The registered inversion method that fills the pool.
        inversion_config: Its budget; the batch becomes ``recipe.images_per_epoch`` (the official
            code inverts one batch of 100 per epoch) and no costs are measured.
        student_spec: A pretrained copy of the teacher's architecture, ``train: linear``.
        recipe: The official recipe.
        test_set: The real test split, normalised for the teacher.
        seed: Seeds the head, each epoch's synthesis and the draws.
        device: Compute device.
        state_dir: Folder of the pool shards and the checkpoint.
        dataset_spec: The teacher's dataset (for the ``real`` source).
        identity: Extra identity of the run (e.g. the teacher file); a checkpoint of another
            identity is refused.
        progress: Show progress bars.
        synthesize_fn: The synthesis call (a seam for tests).

    Returns:
        The curve, the final and best evaluations and the student.

    Raises:
        SMIError: A student other than the official one, or a state folder of another run.
    """
    check_official_student(student_spec, teacher)
    config = dataclasses.replace(
        inversion_config, batch_size=recipe.images_per_epoch, measure_costs=False, warmup_iterations=0
    )
    key = config_hash(
        identity,
        teacher.model_name,
        method.describe(),
        to_dict(config),
        to_dict(student_spec),
        {k: v for k, v in to_dict(recipe).items() if k != "checkpoint_every"},
        seed,
    )
    state = Path(state_dir)
    pool = ImagePool(state / POOL_FOLDER, key)
    teacher_view = TokenSubsetViT(teacher.model)
    patch_size = teacher_view.patch_size
    mean, std = teacher.mean_std(device)
    student = build_official_student(student_spec, teacher, seed, device)
    student_view = TokenSubsetViT(student)
    optimizer = torch.optim.SGD(
        student.parameters(), lr=recipe.lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay
    )
    generator = torch.Generator().manual_seed(seed)
    teacher.model.eval()
    curve: list[dict[str, float]] = []
    best: dict[str, float] = {"epoch": 0, "test_top1": 0.0, "test_top5": 0.0}
    elapsed = 0.0
    saved = _resume(state, key, student, optimizer, generator, pool)
    start_epoch = int(saved["epoch"]) if saved else 0
    if saved:
        curve, best, elapsed = saved["curve"], saved["best"], saved["elapsed"]
    pool.discard_after(start_epoch)

    synthesis_time = 0.0
    epochs = tqdm(range(start_epoch + 1, recipe.epochs + 1), desc="distill (official)", disable=not progress)
    for epoch in epochs:
        tick = time.perf_counter()
        if not pool.stored(epoch):
            image_set = synthesize_fn(
                method=method,
                teacher=teacher,
                num_images=recipe.images_per_epoch,
                config=config,
                seed=epoch_seed(seed, epoch),
                device=device,
                dataset_spec=dataset_spec,
                progress=False,
            )[0]  # the image set
            pool.write(epoch, image_set, patch_size)
        pool.load(epoch)
        synthesis_time += time.perf_counter() - tick
        loss = _step(
            pool, generator, recipe, teacher_view, student, student_view, optimizer, mean, std, patch_size, device
        )
        elapsed += time.perf_counter() - tick
        if epoch % recipe.eval_every == 0 or epoch == recipe.epochs:
            student.eval()
            acc = evaluate_logits(
                student, test_set, recipe.eval_batch_size, device, f"evaluate epoch {epoch}", progress
            )
            student.train()
            curve.append(
                {
                    "epoch": epoch,
                    "train_loss": loss,
                    "pool_size": len(pool),
                    "test_top1": acc["top1"],
                    "test_top5": acc["top5"],
                    "wall_time_s": elapsed,
                }
            )
            if acc["top1"] > best["test_top1"]:  # the official code's strict '>' from 0
                best = {"epoch": epoch, "test_top1": acc["top1"], "test_top5": acc["top5"]}
            epochs.set_postfix(loss=f"{loss:.4f}", top1=f"{acc['top1']:.2f}", best=f"{best['test_top1']:.2f}")
        if epoch % recipe.checkpoint_every == 0 or epoch == recipe.epochs:
            _save(state, key, epoch, student, optimizer, generator, curve, best, elapsed)

    student.eval()
    teacher_acc = evaluate_logits(teacher.model, test_set, recipe.eval_batch_size, device, "evaluate teacher", progress)
    return OfficialResult(student, curve, best, len(pool), teacher_acc, start_epoch, synthesis_time)


def _step(
    pool: ImagePool,
    generator: torch.Generator,
    recipe: OfficialRecipe,
    teacher_view: TokenSubsetViT,
    student: nn.Module,
    student_view: TokenSubsetViT,
    optimizer: torch.optim.Optimizer,
    mean: torch.Tensor,
    std: torch.Tensor,
    patch_size: tuple[int, int],
    device: torch.device | str,
) -> float:
    """One official step on a batch drawn from the pool; returns its loss."""
    _, pixels = pool.draw(recipe.batch_size, generator)
    batch = keep_zero_normalize(pixels.to(device), mean, std)
    masks = nonzero_patch_mask(batch, patch_size)
    with torch.no_grad():
        target = teacher_view.forward_masked(batch, masks)
    student.train()
    loss = official_kd_loss(student_view.forward_masked(batch, masks), target, recipe.temperature)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return float(loss.detach())


def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The parameters that train (the head), by name."""
    return {name: p.detach().cpu().clone() for name, p in model.named_parameters() if p.requires_grad}


def _save(
    state: Path,
    key: str,
    epoch: int,
    student: nn.Module,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
    curve: list[dict[str, float]],
    best: dict[str, float],
    elapsed: float,
) -> None:
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []
    torch_save(
        {
            "key": key,
            "epoch": epoch,
            "trainable": trainable_state(student),
            "optimizer": optimizer.state_dict(),
            "generator": generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": cuda,
            "curve": curve,
            "best": best,
            "elapsed": elapsed,
        },
        state / CHECKPOINT_NAME,
    )


def _resume(
    state: Path,
    key: str,
    student: nn.Module,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
    pool: ImagePool,
) -> dict[str, Any] | None:
    """Restore the checkpoint in ``state`` into the given objects; returns it (``None``: no checkpoint)."""
    path = state / CHECKPOINT_NAME
    if not path.is_file():
        return None
    try:
        saved = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise SMIError(f"cannot read the distillation checkpoint {path} ({exc}); delete it to start over.") from exc
    if saved.get("key") != key:
        raise SMIError(
            f"the state folder {state} holds a distillation run of another configuration; delete it or give this run "
            "its own --state-dir."
        )
    params = dict(student.named_parameters())
    with torch.no_grad():
        for name, value in saved["trainable"].items():
            params[name].copy_(value)
    optimizer.load_state_dict(saved["optimizer"])
    generator.set_state(saved["generator"])
    torch.set_rng_state(saved["torch_rng"])
    if saved["cuda_rng"]:
        torch.cuda.set_rng_state_all(saved["cuda_rng"])
    for epoch in range(1, int(saved["epoch"]) + 1):
        pool.load(epoch)
    return saved
