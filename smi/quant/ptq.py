"""Post-training quantization of a teacher, calibrated on an image set, scored on real data.

Data-free PTQ after PSAQ-ViT (Li et al., ECCV 2022) as used by Sparse Model Inversion (Hu et
al., ICML 2024), under the ``suite`` or the ``official`` protocol (``QuantConfig.protocol``;
docs/protocols.md): quantize the teacher (see :mod:`smi.quant.model`),
calibrate the activation ranges on a few (paper: 32) images of a calibration source - an
inversion method's synthetic images, Gaussian noise, or real training images as the upper
reference - and report the quantized model's top-1 / top-5 on the real test split next to the
floating-point teacher's.
"""

from __future__ import annotations

import time
from typing import Any

import torch
from torch.utils.data import Dataset

from smi.config import to_dict
from smi.imageset import ImageSet
from smi.quant.accuracy import evaluate_logits
from smi.quant.calibrate import calibrate, select_images
from smi.quant.config import QuantConfig
from smi.quant.model import quantize_vit
from smi.quant.preprocess import keep_zero_inputs
from smi.sparse_vit import TokenSubsetViT
from smi.types import Teacher


def run_ptq(
    teacher: Teacher,
    calib_set: ImageSet,
    test_set: Dataset,
    config: QuantConfig,
    seed: int,
    device: torch.device | str,
    progress: bool = True,
    fp_accuracy: dict[str, float] | None = None,
) -> dict[str, Any]:
    """Quantize ``teacher``, calibrate on ``calib_set`` and evaluate on ``test_set``.

    Args:
        teacher: The floating-point teacher (its model on ``device``, in eval mode).
        calib_set: Calibration source; ``config.calib_size`` images are drawn with ``seed``.
        test_set: The real test split, normalised for the teacher.
        config: Bit-widths, range estimator, sizes.
        seed: Seed of the calibration subset.
        device: Compute device.
        progress: Show progress bars on stderr.
        fp_accuracy: The floating-point teacher's accuracy on ``test_set`` if already known
            (several bit-widths on one split need it once); evaluated here otherwise.

    Returns:
        The measured numbers: ``top1``, ``top5`` (quantized), ``fp_top1``, ``fp_top5``,
        ``w_bits``, ``a_bits``, ``calib_size``, ``range_estimator``, ``protocol``,
        ``num_act_quantizers``, ``calib_sparsity``,
        ``num_test_images``, ``calib_time_s``, ``eval_time_s``, the ``quant_config`` and the
        calibrated ``activation_ranges`` (``quantizer``, ``lo``, ``hi`` per activation quantizer),
        so that calibration sources can be compared range by range.

    Raises:
        SMIError: If the set does not fit the teacher, is empty or too small.
    """
    grid = TokenSubsetViT(teacher.model).grid_size
    calib_set.check_compatible(teacher.num_classes, teacher.input_size, grid)
    calib = select_images(calib_set, config.calib_size, seed)
    torch.manual_seed(seed)

    start = time.perf_counter()
    qmodel = quantize_vit(teacher.model, config).to(device)
    calibrate(qmodel, calib, teacher.normalize, config.calib_batch_size, device, progress)
    calib_time = time.perf_counter() - start

    start = time.perf_counter()
    fp = fp_accuracy or fp_evaluation(teacher, test_set, config.eval_batch_size, device, progress)
    logits_fn = qmodel.logits
    if config.protocol == "official":
        # The official validation transform applies keep_zero to the test images as well.
        def logits_fn(images: torch.Tensor) -> torch.Tensor:
            return qmodel.logits(keep_zero_inputs(images, teacher.normalize))

    quant = evaluate_logits(logits_fn, test_set, config.eval_batch_size, device, "evaluate quantized", progress)
    eval_time = time.perf_counter() - start

    return {
        "top1": quant["top1"],
        "top5": quant["top5"],
        "fp_top1": fp["top1"],
        "fp_top5": fp["top5"],
        "w_bits": config.w_bits,
        "a_bits": config.a_bits,
        "calib_size": len(calib),
        "range_estimator": config.range_estimator,
        "protocol": config.protocol,
        "num_act_quantizers": sum(1 for _ in qmodel.act_quantizers()),
        "calib_sparsity": calib.sparsity,
        "num_test_images": quant["num_images"],
        "calib_time_s": calib_time,
        "eval_time_s": eval_time,
        "quant_config": to_dict(config),
        "activation_ranges": qmodel.activation_ranges(),
    }


def fp_evaluation(
    teacher: Teacher, test_set: Dataset, batch_size: int, device: torch.device | str, progress: bool = True
) -> dict[str, float]:
    """Accuracy of the floating-point teacher on ``test_set`` (the reference of every PTQ row)."""
    teacher.model.eval()
    return evaluate_logits(teacher.model, test_set, batch_size, device, "evaluate FP", progress)
