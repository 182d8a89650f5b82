"""PSAQ-ViT as its official code generates calibration images (``psaq`` with ``protocol: official``).

Reproduces ``generate_data.py`` of zkkli/PSAQ-ViT (Li et al., ECCV 2022) on a timm ViT, with
every number taken from there (docs/protocols.md, section PSAQ-ViT, lists them against the
suite's ``psaq``):

- Images: N(0, 1) in normalised space, optimised with Adam (lr 0.2, betas (0.5, 0.9),
  eps 1e-8), clipped to the valid pixel range after each step; the final iterate is the output.
- Labels: drawn uniformly from all classes, unsorted (``random.randint(0, 999)`` per image);
  the labels the suite hands the method are not used.
- Schedule: two stages of 500 iterations, one optimiser throughout; in each stage the learning
  rate warms up linearly for 100 iterations, then follows a cosine to zero
  (:func:`stage_learning_rate`).
- Jitter: one random offset for both axes (a diagonal roll), up to 15 px in the first stage and
  30 px in the second, and a flip with probability 1/2.
- Loss: ``-sum over blocks H + CE + 0.05 * | TV(jittered batch) - v |``: cross entropy of the
  batch mean; the TV of :func:`smi.inversion.priors.batch_total_variation` on the *jittered* images, held
  at a target ``v`` drawn once per batch from the band [2500, 3000] ("for batch size 32" in the
  official code, at 224 px); ``H`` the differential entropy of the patch similarities of each
  block.
- Entropy: the attention output *before* the projection (``attn @ v``), averaged over heads,
  class token dropped; cosine similarities of every ordered patch pair, the diagonal included
  (N^2 values); a Gaussian KDE of bandwidth 0.01 evaluated at 10 points from the batch's
  smallest to its largest similarity (no gradient through the ends), offset by 1e-4,
  ``-p log p`` integrated by the trapezoid rule and averaged over the batch.

The stage lengths, jitter limits, warm-up and TV band are parameters (``psaq`` params) with
the official values as defaults, so that a smoke-scale run can shrink them. Differences that
do not change the mathematics: similarities come from a matmul of unit vectors rather than
broadcasting ``cosine_similarity`` (no B x N x N x d tensor; equal up to float rounding, and
the FLOP counter sees the matmul), the evaluation grid is built on the device without reading
its ends back to the host, and the random draws come from the run's seeded torch generator,
not Python's ``random``.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from smi.errors import SMIError
from smi.inversion import InversionConfig, InversionResult, InversionStats, forward_precision
from smi.inversion.costs import CPU_MEMORY, CUDA_MEMORY, Stopwatch, count_flops, saved_activation_bytes
from smi.inversion.jitter import PixelJitter, PixelJitterSampler
from smi.inversion.priors import batch_total_variation
from smi.types import Teacher

#: Official Adam settings for ViT/DeiT (Swin uses lr 0.25; the suite runs ViTs only).
LR = 0.20
BETAS = (0.5, 0.9)
EPS = 1e-8
#: Official stage lengths, per-stage jitter limits (px) and linear warm-up (iterations).
STAGES = (500, 500)
STAGE_JITTER = (15, 30)
WARMUP = 100
#: Weights of the cross entropy and the TV term; the TV target band.
CE_WEIGHT = 1.0
TV_WEIGHT = 0.05
TV_BAND = (2500.0, 3000.0)
#: The KDE: Gaussian bandwidth, evaluation points and the density offset before the logarithm.
BANDWIDTH = 0.01
KDE_POINTS = 10
DENSITY_FLOOR = 1e-4


def stage_learning_rate(base: float, warmup: int, length: int, iteration: int) -> float:
    """The official ``lr_cosine_policy``: linear warm-up over ``warmup`` iterations, then cosine to 0."""
    if iteration < warmup:
        return base * (iteration + 1) / warmup
    return 0.5 * (1 + math.cos(math.pi * (iteration - warmup) / (length - warmup))) * base


def official_kde_entropy(similarities: torch.Tensor) -> torch.Tensor:
    """The official differential entropy of similarities (B, P), averaged over the batch."""
    lo, hi = similarities.detach().min(), similarities.detach().max()
    steps = torch.arange(KDE_POINTS, device=similarities.device, dtype=similarities.dtype) / (KDE_POINTS - 1)
    grid = (lo + (hi - lo) * steps).expand(similarities.shape[0], KDE_POINTS)  # (B, M)
    diffs = grid.unsqueeze(-1) - similarities.unsqueeze(1)  # (B, M, P)
    variance = BANDWIDTH**2
    density = (torch.exp(-diffs.pow(2) / (2 * variance)) / math.sqrt(2 * math.pi * variance)).mean(-1)
    p = density + DENSITY_FLOOR
    return torch.trapezoid(-p * torch.log(p), grid, dim=-1).mean()


def patch_similarities(head_mean: torch.Tensor) -> torch.Tensor:
    """Cosine similarities (B, N^2) of every ordered pair of patch features (B, N, d)."""
    unit = F.normalize(head_mean, dim=-1, eps=1e-8)
    return (unit @ unit.transpose(1, 2)).flatten(1)


class PreProjectionOutputs:
    """Records every block's attention output before the projection, averaged over heads."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.features: list[torch.Tensor] = []
        for index, block in enumerate(model.blocks):
            attn = getattr(block, "attn", None)
            proj = getattr(attn, "proj", None)
            plain = (
                isinstance(getattr(attn, "norm", nn.Identity()), nn.Identity) and getattr(attn, "gate", None) is None
            )
            if proj is None or not hasattr(attn, "num_heads") or not plain:
                raise SMIError(
                    f"block {index} has no standard timm attention (qkv, heads, proj); PSAQ-ViT official needs one."
                )

    @contextlib.contextmanager
    def watch(self) -> Iterator[None]:
        self.features = []
        handles = [
            block.attn.proj.register_forward_pre_hook(self._record(block.attn.num_heads)) for block in self.model.blocks
        ]
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()

    def _record(self, heads: int):
        def hook(_module: nn.Module, args: tuple) -> None:
            x = args[0]  # (B, T, heads * d): attn @ v with the heads side by side
            b, t, width = x.shape
            # fp32 even under autocast: a KDE of bandwidth 0.01 needs the resolution.
            self.features.append(x.float().view(b, t, heads, width // heads).mean(2))

        return hook


class OfficialPSAQRun:
    """One batch generated as PSAQ-ViT's ``generate_data`` does; call :meth:`run`.

    Args:
        teacher: The ViT to invert.
        batch: Images generated together.
        config: The suite's inversion config; only ``warmup_iterations`` (untimed passes),
            ``measure_costs`` and ``precision`` are read, the schedule is PSAQ-ViT's own.
        stages: Iterations of each stage (official (500, 500)).
        stage_jitter: Largest diagonal roll in pixels in each stage (official (15, 30)).
        warmup: Warm-up iterations of each stage's learning rate (official 100).
        tv_band: Band the TV target is drawn from (official [2500, 3000]).
        seed: Seed of the batch (labels, initial images, jitter, TV target).
        device: Compute device.
        progress: Show a progress bar.
    """

    def __init__(
        self,
        teacher: Teacher,
        batch: int,
        config: InversionConfig,
        stages: tuple[int, ...] = STAGES,
        stage_jitter: tuple[int, ...] = STAGE_JITTER,
        warmup: int = WARMUP,
        tv_band: tuple[float, float] = TV_BAND,
        seed: int = 0,
        device: torch.device | str = "cpu",
        progress: bool = True,
    ) -> None:
        self.teacher, self.config = teacher, config
        self.device = torch.device(device)
        self.model = teacher.model.to(self.device).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.recorder = PreProjectionOutputs(self.model)
        self.prefix = int(self.model.num_prefix_tokens)
        self.stages, self.stage_jitter, self.warmup, self.tv_band = stages, stage_jitter, warmup, tv_band
        self.generator = torch.Generator().manual_seed(seed)
        self.shape = (batch, *teacher.input_size)
        self.progress = progress
        mean, std = teacher.mean_std(self.device)
        c = self.shape[1]
        self.mean, self.std = mean.view(1, c, 1, 1), std.view(1, c, 1, 1)
        self.lower, self.upper = (0 - self.mean) / self.std, (1 - self.mean) / self.std

    def loss(self, images: torch.Tensor, jitter: PixelJitter, labels: torch.Tensor, tv_target: float) -> torch.Tensor:
        """The official total loss of one iteration."""
        shown = jitter.apply(images)
        with self.recorder.watch(), forward_precision(self.config, self.device):
            logits = self.model(shown).float()
        entropy = sum(official_kde_entropy(patch_similarities(f[:, self.prefix :])) for f in self.recorder.features)
        self.recorder.features = []
        tv = (batch_total_variation(shown) - tv_target).abs()
        return -entropy + CE_WEIGHT * F.cross_entropy(logits, labels) + TV_WEIGHT * tv

    def run(self) -> list[InversionResult]:
        """Generate the batch; one result (every patch kept)."""
        g, device = self.generator, self.device
        b = self.shape[0]
        images = torch.randn(self.shape, generator=g).to(device).requires_grad_(True)
        labels = torch.randint(0, self.teacher.num_classes, (b,), generator=g).to(device)
        low, high = self.tv_band
        tv_target = low + (high - low) * torch.rand((), generator=g, dtype=torch.float64).tolist()
        optimizer = torch.optim.Adam([images], lr=LR, betas=BETAS, eps=EPS, fused=device.type in ("cpu", "cuda"))
        total = sum(self.stages)
        losses = torch.zeros(total, device=device)
        for _ in range(self.config.warmup_iterations):
            self.loss(images.detach().clone().requires_grad_(True), PixelJitter(), labels, tv_target).backward()
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        watch = Stopwatch(device)
        watch.start()
        bar = tqdm(total=total, desc="psaq", disable=not self.progress, leave=False, mininterval=1.0)
        t = 0
        for length, limit in zip(self.stages, self.stage_jitter):
            sampler = PixelJitterSampler(limit, limit, True, diagonal=True)
            for itr in range(length):
                optimizer.param_groups[0]["lr"] = stage_learning_rate(LR, self.warmup, length, itr)
                jitter = sampler.sample(g)
                optimizer.zero_grad(set_to_none=True)
                loss = self.loss(images, jitter, labels, tv_target)
                loss.backward()
                optimizer.step()
                with torch.no_grad():
                    images.clamp_(self.lower, self.upper)
                losses[t] = loss.detach()
                t += 1
                bar.update()
        watch.stop()
        bar.close()
        pixels = (images.detach() * self.std + self.mean).clamp(0, 1)
        stats = self._stats(watch.elapsed, losses, labels, tv_target)
        grid = tuple(self.model.patch_embed.grid_size)
        mask = torch.ones(b, *grid, dtype=torch.bool)
        return [InversionResult(pixels.cpu(), mask, labels.cpu(), stats)]

    def _stats(self, wall: float, losses: torch.Tensor, labels: torch.Tensor, tv_target: float) -> InversionStats:
        """Every iteration costs the same: one probe step gives FLOPs and saved bytes (untimed)."""
        n = int(self.model.patch_embed.num_patches)
        total = sum(self.stages)
        flops = saved = 0
        if self.config.measure_costs:

            def probe() -> torch.Tensor:
                return self.loss(
                    torch.zeros(self.shape, device=self.device, requires_grad=True), PixelJitter(), labels, tv_target
                )

            flops = count_flops(probe)
            with saved_activation_bytes(exclude=list(self.model.parameters())) as record:
                loss = probe()
            saved = record["bytes"]
            del loss
        if self.device.type == "cuda":
            peak = after = torch.cuda.max_memory_allocated(self.device)
            kind = CUDA_MEMORY
        else:
            peak = after = saved
            kind = CPU_MEMORY
        return InversionStats(
            wall_time_s=wall,
            iterations=total,
            batch_size=self.shape[0],
            num_patches=n,
            active_tokens=[n] * total,
            flops_total=flops * total,
            flops_by_tokens={n: flops},
            peak_memory_bytes=int(peak),
            peak_memory_after_last_stop_bytes=int(after),
            memory_kind=kind,
            loss_curve=[float(v) for v in losses.cpu()],
            decision_iterations=[],
        )
