"""Side-by-side cost benchmark of dense inversion and SMI on one model, in one process.

Speed is only comparable within a run on the same machine state, so the benchmark times
dense and SMI alternately (``repeats`` rounds) on the same model, batch and iterations and
reports ratios. The FLOP reduction of the full paper schedule (4000 iterations) is computed from
the FLOPs measured at each active token count, which is exact because an iteration's cost
depends only on its token count.
"""

from __future__ import annotations

from dataclasses import dataclass
from statistics import median
from typing import Any

import timm
import torch
from timm.data import resolve_data_config

from smi.errors import SMIError
from smi.inversion import InversionConfig, InversionRun, InversionStats, invert
from smi.policies import AttentionStopping, NoStopping
from smi.schedule import StoppingSchedule, active_tokens_per_iteration
from smi.sparse_vit import check_vit
from smi.types import Teacher

PAPER_ITERATIONS_TOTAL = 4000


def random_teacher(model_name: str, img_size: int | None = None, num_classes: int = 1000, **kwargs: Any) -> Teacher:
    """A timm ViT with random weights (cost figures do not depend on the weights)."""
    if model_name not in timm.list_models():
        raise SMIError(f"unknown timm model {model_name!r}; see timm.list_models('*vit*') for names.")
    if img_size is not None:
        kwargs["img_size"] = img_size
    model = timm.create_model(model_name, pretrained=False, num_classes=num_classes, **kwargs).eval()
    check_vit(model)
    data_config = resolve_data_config({}, model=model)
    # The pretrained config names the default size; a model built for another size must win.
    data_config["input_size"] = (model.patch_embed.proj.in_channels, *model.patch_embed.img_size)
    return Teacher(model, model_name, num_classes, data_config, "random")


@dataclass
class BenchResult:
    """Figures of one benchmark."""

    dense: list[InversionStats]
    smi: list[InversionStats]
    full_schedule_flop_reduction: float
    full_schedule_dense_flops: int
    full_schedule_smi_flops: int
    full_schedule_forward_flop_reduction: float

    def summary(self) -> dict[str, float]:
        """Median times and the ratios the paper reports."""
        iters = self.dense[0].iterations
        dense_t = median(s.wall_time_s for s in self.dense)
        smi_t = median(s.wall_time_s for s in self.smi)
        flop_ratio = self.dense[0].flops_total / self.smi[0].flops_total
        speedup = dense_t / smi_t
        return {
            "dense_s_per_iteration": dense_t / iters,
            "smi_s_per_iteration": smi_t / iters,
            "wall_time_speedup": speedup,
            "flop_ratio": flop_ratio,
            "speedup_over_flop_ratio": speedup / flop_ratio,
            "flop_reduction_pct": 100 * (1 - 1 / flop_ratio),
            "memory_ratio": self.dense[0].peak_memory_after_last_stop_bytes / max(1, self.smi[0].peak_memory_after_last_stop_bytes),
            "memory_reduction_after_last_stop_pct": 100
            * (1 - self.smi[0].peak_memory_after_last_stop_bytes / max(1, self.dense[0].peak_memory_after_last_stop_bytes)),
            "full_schedule_flop_reduction_pct": 100 * self.full_schedule_flop_reduction,
            "full_schedule_forward_flop_reduction_pct": 100 * self.full_schedule_forward_flop_reduction,
            "per_round_speedups": [d.wall_time_s / s.wall_time_s for d, s in zip(self.dense, self.smi)],  # type: ignore[dict-item]
        }


def run_benchmark(
    teacher: Teacher,
    batch_size: int,
    iterations: int,
    schedule: StoppingSchedule,
    repeats: int = 1,
    device: torch.device | str = "cpu",
    seed: int = 0,
    progress: bool = True,
) -> BenchResult:
    """Time dense and SMI alternately and compute the full-schedule FLOP reduction.

    Args:
        teacher: Model to invert (random weights are fine).
        batch_size: Images per batch.
        iterations: Iterations of the timed short run.
        schedule: SMI schedule of the short run.
        repeats: Alternating rounds (dense, SMI) to time.
        device: Compute device.
        seed: Seed.
        progress: Show progress bars.
    """
    config = InversionConfig(iterations=iterations, batch_size=batch_size)
    targets = torch.arange(batch_size) % teacher.num_classes
    dense: list[InversionStats] = []
    smi: list[InversionStats] = []
    for _ in range(repeats):
        dense.append(invert(teacher, targets, config, NoStopping(), None, seed, device, progress)[0].stats)
        smi.append(invert(teacher, targets, config, AttentionStopping(schedule), None, seed, device, progress)[0].stats)
    full = StoppingSchedule()
    n = dense[0].num_patches
    counts = active_tokens_per_iteration(full, n, PAPER_ITERATIONS_TOTAL)
    # An iteration's cost depends only on its token count (and whether it scores), so the
    # full 4000-iteration schedule is summed from one measured step per count.
    meter = InversionRun(teacher, targets, config, AttentionStopping(full), seed=seed, device=device, progress=False)
    scoring = set(full.iterations)
    smi_full = sum(meter.step_flops(c, t in scoring) for t, c in enumerate(counts))
    dense_full = meter.step_flops(n) * PAPER_ITERATIONS_TOTAL
    forward = {c: meter.step_forward_flops(c) for c in set(counts)}
    forward_reduction = 1 - sum(forward[c] for c in counts) / (forward[n] * PAPER_ITERATIONS_TOTAL)
    return BenchResult(dense, smi, 1 - smi_full / dense_full, dense_full, smi_full, forward_reduction)
