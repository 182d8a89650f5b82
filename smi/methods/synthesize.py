"""Turn a registered method into an image set: batching, targets, seeds and cost totals.

A method inverts one batch at a time; this module splits the requested number of output
images into batches of trajectories, gives each batch its own seed and its target labels,
concatenates the outputs and sums the measured costs (:class:`smi.records.InversionCosts`).

Targets follow the inversion protocol (docs/protocols.md): ``suite`` cycles through every class
in a seeded random order (:func:`balanced_targets`); ``official`` draws each batch's labels
uniformly at random and sorts them, as the official SMI code does (:func:`official_targets`).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import torch

from smi.config import config_hash, to_dict
from smi.imageset import ImageSet, teacher_fingerprint
from smi.inversion import InversionConfig, InversionResult
from smi.methods.registry import InversionMethod, InversionRequest
from smi.records import InversionCosts, mean_kept_patches
from smi.sparse_vit import TokenSubsetViT
from smi.types import Teacher

#: Seeds of consecutive batches are spread apart so they never coincide with another job's seed.
BATCH_SEED_STRIDE = 1_000_003


def balanced_targets(count: int, num_classes: int, seed: int) -> torch.Tensor:
    """``count`` labels cycling through all classes, shuffled with ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(count) % num_classes
    return labels[torch.randperm(count, generator=generator)]


def official_targets(count: int, num_classes: int, seed: int, batch_size: int) -> torch.Tensor:
    """``count`` labels drawn uniformly from all classes, sorted within each batch.

    The official SMI code draws ``torch.randint(0, num_classes, (batch,))`` and sorts it "for
    better visualization", once per synthesised batch; calibration sets made under
    ``protocol: official`` take their labels from here too.
    """
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, num_classes, (count,), generator=generator)
    return torch.cat([chunk.sort().values for chunk in labels.split(batch_size)]) if count else labels


def sample_targets(protocol: str, count: int, num_classes: int, seed: int, batch_size: int) -> torch.Tensor:
    """The target labels of ``count`` trajectories under an inversion ``protocol``."""
    if protocol == "official":
        return official_targets(count, num_classes, seed, batch_size)
    return balanced_targets(count, num_classes, seed)


def teacher_description(teacher: Teacher) -> dict[str, Any]:
    """What an image set records about the teacher it was made for."""
    vit = TokenSubsetViT(teacher.model)
    return {
        "model_name": teacher.model_name,
        "num_classes": teacher.num_classes,
        "input_size": list(teacher.input_size),
        "patch_size": list(vit.patch_size),
        "grid_size": list(vit.grid_size),
        "dataset": teacher.dataset,
        "mean": list(teacher.data_config["mean"]),
        "std": list(teacher.data_config["std"]),
        "path": teacher.metadata.get("path"),
        "fingerprint": teacher_fingerprint(teacher.model, teacher.model_name, teacher.metadata.get("model_kwargs")),
    }


class Synthesis(NamedTuple):
    """What :func:`synthesize` made.

    Attributes:
        image_set: The output images.
        method: The method's description (``method``, ``method_params``, ...) and ``protocol``.
        costs: What producing them cost.
        config_hash: Hash of everything that determines the images.
    """

    image_set: ImageSet
    method: dict[str, Any]
    costs: InversionCosts
    config_hash: str


def synthesize(
    method: InversionMethod,
    teacher: Teacher,
    num_images: int,
    config: InversionConfig,
    seed: int,
    device: torch.device | str = "cpu",
    dataset_spec: Any = None,
    progress: bool = True,
) -> Synthesis:
    """Produce ``num_images`` output images with ``method``.

    Args:
        method: A registered method instance.
        teacher: The model to invert.
        num_images: Output images wanted (PRI yields several per trajectory).
        config: Budget; ``config.batch_size`` trajectories are optimised together.
        seed: Job seed (targets and every batch's seed derive from it).
        device: Compute device.
        dataset_spec: The teacher's dataset, for sources that need it.
        progress: Show progress bars.

    Returns:
        The image set, the method's description, the costs (summed over batches; curves of the
        first batch) and the config hash; :func:`smi.records.inversion_record` makes them a record.
    """
    device = torch.device(device)
    per_trajectory = method.outputs_per_trajectory()
    trajectories = math.ceil(num_images / per_trajectory)
    targets = sample_targets(config.protocol, trajectories, teacher.num_classes, seed, config.batch_size)
    results: list[InversionResult] = []
    first: InversionResult | None = None
    wall = flops = peak = after = 0
    for index, start in enumerate(range(0, trajectories, config.batch_size)):
        request = InversionRequest(
            teacher=teacher,
            targets=targets[start : start + config.batch_size],
            config=config,
            seed=seed * BATCH_SEED_STRIDE + index,
            device=device,
            dataset_spec=dataset_spec,
            progress=progress,
        )
        batch = method.invert(request)
        first = first or batch[0]
        stats = batch[0].stats
        wall += stats.wall_time_s
        flops += stats.flops_total
        peak = max(peak, stats.peak_memory_bytes)
        after = max(after, stats.peak_memory_after_last_stop_bytes)
        results.extend(batch)
    assert first is not None
    images = torch.cat([r.images for r in results])
    masks = torch.cat([r.keep_masks for r in results])
    labels = torch.cat([r.targets for r in results])
    produced = int(images.shape[0])
    description = method.describe()
    chash = config_hash(description, to_dict(config), teacher.model_name, teacher.dataset, num_images)
    metadata = {
        **description,
        "teacher": teacher_description(teacher),
        "seed": seed,
        "config_hash": chash,
        "inversion_config": to_dict(config),
        "protocol": config.protocol,
        "produced_images": produced,
    }
    image_set = ImageSet(images[:num_images], masks[:num_images], labels[:num_images], metadata)
    s = first.stats
    costs = InversionCosts(
        num_images=produced,
        num_patches=s.num_patches,
        final_kept_patches=mean_kept_patches(masks),
        wall_time_s=wall,
        flops_total=flops,
        peak_memory_bytes=peak,
        peak_memory_after_last_stop_bytes=after,
        memory_kind=s.memory_kind,
        batch_size=config.batch_size,
        iterations=config.iterations,
        active_tokens=s.active_tokens,
        loss_curve=s.loss_curve,
        decision_iterations=s.decision_iterations,
    )
    return Synthesis(image_set, {**description, "protocol": config.protocol}, costs, chash)
