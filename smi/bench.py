"""Interleaved timing of inversion methods on one model, in one process.

Speed is only comparable within a run on the same machine state, so methods are timed
alternately (``rounds`` rounds, each method once per round, the order reversed every other
round) on the same model, batch and iterations. :func:`time_methods` does this for any registered
methods (the workflow's
``smi time-inversions`` job); :func:`run_benchmark` for dense inversion and SMI on a model with
random weights (``smi bench-inversion``), plus the FLOP reduction of the full paper schedule
(4000 iterations), computed from the FLOPs measured at each active token count, which is exact
because an iteration's cost depends only on its token count.

A timed run may be shorter than the real one: its iterations and every stopping schedule are
compressed by the same factor (:func:`compress_method`), so each token count keeps its share of
the iterations and the time per iteration keeps its mix.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from statistics import median
from typing import Any

import timm
import torch
from timm.data import resolve_data_config

from smi.errors import SMIError
from smi.inversion import InversionConfig, InversionRequest, InversionResult, InversionRun, InversionStats, invert
from smi.inversion.policies import AttentionStopping, NoStopping
from smi.inversion.schedule import StoppingSchedule, active_tokens_per_iteration
from smi.methods.registry import InversionMethod
from smi.methods.synthesize import balanced_targets
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
            "memory_ratio": self.dense[0].peak_memory_after_last_stop_bytes
            / max(1, self.smi[0].peak_memory_after_last_stop_bytes),
            "memory_reduction_after_last_stop_pct": 100
            * (
                1
                - self.smi[0].peak_memory_after_last_stop_bytes
                / max(1, self.dense[0].peak_memory_after_last_stop_bytes)
            ),
            "full_schedule_flop_reduction_pct": 100 * self.full_schedule_flop_reduction,
            "full_schedule_forward_flop_reduction_pct": 100 * self.full_schedule_forward_flop_reduction,
            "per_round_speedups": [d.wall_time_s / s.wall_time_s for d, s in zip(self.dense, self.smi)],  # type: ignore[dict-item]
        }


TimedRun = Callable[[], list[InversionResult]]


def interleaved(runs: Mapping[str, TimedRun], rounds: int) -> dict[str, list[list[InversionResult]]]:
    """Call every run once per round, for ``rounds`` rounds, reversing the order every other round.

    Interleaving spreads a slow phase of the machine (another process, thermal throttling)
    over every method instead of charging it to whichever method ran then. Alternating the
    order (first to last, then last to first) cancels what running early or late in a round
    does to a method (caches and allocator state left by the previous method, a drift of the
    clock speed over the round), so two methods that do the same work get the same time.

    Args:
        runs: Label -> a call that runs one timed inversion and returns its results.
        rounds: Rounds (at least 1).

    Returns:
        Label -> the results of each round.
    """
    if rounds < 1:
        raise SMIError(f"timing needs at least one round, got {rounds}.")
    out: dict[str, list[list[InversionResult]]] = {label: [] for label in runs}
    labels = list(runs)
    for round_index in range(rounds):
        for label in labels if round_index % 2 == 0 else reversed(labels):
            out[label].append(runs[label]())
    return out


def compress_method(method: InversionMethod, factor: float) -> InversionMethod:
    """The same method with its stopping schedule scaled by ``factor`` (a compressed run).

    A method whose parameters hold a stopping schedule (an ``iterations`` field and a
    ``schedule()`` method, like SMI's) gets it scaled by :meth:`StoppingSchedule.scaled`;
    schedules defined as fractions of the run (PRI's division) scale by themselves.
    """
    params = method.params
    if factor == 1.0 or not (
        dataclasses.is_dataclass(params)
        and hasattr(params, "schedule")
        and any(f.name == "iterations" for f in dataclasses.fields(params))
    ):
        return method
    scaled = params.schedule().scaled(factor)
    return type(method)(dataclasses.replace(params, iterations=scaled.iterations))


@dataclass
class MethodTiming:
    """Interleaved wall times of one method.

    Attributes:
        label: The method's label (config name).
        method: The registered method name.
        batch_size: Trajectories optimised together (as in the method's inversion job).
        images_per_round: Output images one timed run yields (PRI: several per trajectory).
        times_s: Wall time of the optimisation loop in each round (warm-up excluded).
    """

    label: str
    method: str
    batch_size: int
    images_per_round: int
    times_s: list[float]

    def per_image(self) -> list[float]:
        """Seconds per output image in each round."""
        return [t / self.images_per_round for t in self.times_s]


@dataclass
class TimingResult:
    """Interleaved timings of several methods on one teacher.

    Attributes:
        methods: Label -> its timing, in timing order.
        iterations: Iterations of each timed run.
        full_iterations: Iterations of the run being timed (the compression factor is their ratio).
        rounds: Interleaved rounds.
        reference: Label of the method speed-ups are taken against (``None``: no speed-ups).
    """

    methods: dict[str, MethodTiming]
    iterations: int
    full_iterations: int
    rounds: int
    reference: str | None

    def speedups(self, label: str) -> list[float]:
        """Reference time per image / method time per image, per round (empty without a reference)."""
        if self.reference is None:
            return []
        ref = self.methods[self.reference].per_image()
        return [r / m for r, m in zip(ref, self.methods[label].per_image())]

    def rows(self) -> list[dict[str, Any]]:
        """One row per method: the fastest round's figures and the per-round values.

        A method's time is its fastest round, as ``timeit`` advises: what else the machine does
        only ever adds time, so the fastest round is the one least disturbed, and two methods
        that do the same work converge to the same fastest time. The speed-up is the
        reference's fastest time over the method's (per output image); the per-round ratios are
        kept to show the spread.
        """
        rows = []
        reference = min(self.methods[self.reference].per_image()) if self.reference is not None else None
        for label, timing in self.methods.items():
            speedups = self.speedups(label)
            fastest = min(timing.per_image())
            rows.append(
                {
                    "method": label,
                    "method_name": timing.method,
                    "batch_size": timing.batch_size,
                    "images_per_round": timing.images_per_round,
                    "time_per_image_s": fastest,
                    "speedup": None if reference is None else reference / fastest,
                    "time_per_round_s": timing.times_s,
                    "speedup_per_round": speedups,
                }
            )
        return rows


def time_methods(
    teacher: Teacher,
    methods: Mapping[str, InversionMethod],
    config: InversionConfig,
    num_images: int,
    rounds: int = 3,
    full_iterations: int | None = None,
    reference: str | None = "dense",
    device: torch.device | str = "cpu",
    seed: int = 0,
    progress: bool = False,
) -> TimingResult:
    """Time every method's inversion loop interleaved, on the batch its inversion job uses.

    Args:
        teacher: The model to invert.
        methods: Label -> method (only methods that synthesise images can be timed).
        config: The run's inversion config with the timed ``iterations``; FLOP and memory
            counting is switched off (it is exact in the inversion jobs and costs untimed passes).
        num_images: Output images of the inversion job: a method optimises
            ``min(batch_size, ceil(num_images / outputs per trajectory))`` trajectories at once.
        rounds: Interleaved rounds (the fastest is reported).
        full_iterations: Iterations of the real run; schedules are compressed by
            ``config.iterations / full_iterations`` (``None``: no compression).
        reference: Label speed-ups are taken against (``None`` or absent: no speed-ups).
        device: Compute device.
        seed: Seed of the timed runs (every round uses the same images and targets).
        progress: Show progress bars.

    Raises:
        SMIError: For a method that does not synthesise images, or no method at all.
    """
    if not methods:
        raise SMIError("no method to time; list at least one inversion method.")
    passive = sorted(label for label, m in methods.items() if not m.synthesizes)
    if passive:
        raise SMIError(f"methods {passive} do not invert the teacher (image sources); leave them out of timing.")
    full = full_iterations or config.iterations
    factor = config.iterations / full
    timed_config = dataclasses.replace(config, measure_costs=False)
    device = torch.device(device)
    runs: dict[str, TimedRun] = {}
    batches: dict[str, int] = {}
    for label, method in methods.items():
        method = compress_method(method, factor)
        batch = min(config.batch_size, math.ceil(num_images / method.outputs_per_trajectory()))
        targets = balanced_targets(batch, teacher.num_classes, seed)
        request = InversionRequest(
            teacher=teacher,
            targets=targets,
            config=dataclasses.replace(timed_config, batch_size=batch),
            seed=seed,
            device=device,
            progress=progress,
        )
        runs[label] = lambda method=method, request=request: method.invert(request)
        batches[label] = batch
    timed = interleaved(runs, rounds)
    timings = {
        label: MethodTiming(
            label,
            methods[label].name,
            batches[label],
            sum(int(r.images.shape[0]) for r in results[0]),
            [results_round[0].stats.wall_time_s for results_round in results],
        )
        for label, results in timed.items()
    }
    return TimingResult(timings, config.iterations, full, rounds, reference if reference in methods else None)


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
    request = InversionRequest(
        teacher=teacher, targets=targets, config=config, seed=seed, device=device, progress=progress
    )
    runs = {
        "dense": lambda: invert(request, policy=NoStopping()),
        "smi": lambda: invert(request, policy=AttentionStopping(schedule)),
    }
    timed = interleaved(runs, repeats)
    dense = [r[0].stats for r in timed["dense"]]
    smi = [r[0].stats for r in timed["smi"]]
    full = StoppingSchedule()
    n = dense[0].num_patches
    counts = active_tokens_per_iteration(full, n, PAPER_ITERATIONS_TOTAL)
    # An iteration's cost depends only on its token count (and whether it scores), so the
    # full 4000-iteration schedule is summed from one measured step per count.
    probe = InversionRequest(teacher=teacher, targets=targets, config=config, seed=seed, device=device, progress=False)
    meter = InversionRun(probe).costs
    scoring = set(full.iterations)
    smi_full = sum(meter.step_flops(c, t in scoring) for t, c in enumerate(counts))
    dense_full = meter.step_flops(n) * PAPER_ITERATIONS_TOTAL
    forward = {c: meter.step_forward_flops(c) for c in set(counts)}
    forward_reduction = 1 - sum(forward[c] for c in counts) / (forward[n] * PAPER_ITERATIONS_TOTAL)
    return BenchResult(dense, smi, 1 - smi_full / dense_full, dense_full, smi_full, forward_reduction)
