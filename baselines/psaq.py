"""``psaq`` and ``psaq-smi``: the PSAQ-ViT patch-similarity loss (Li et al., ECCV 2022).

PSAQ-ViT synthesises calibration images for ViT quantization by maximising the *patch
similarity entropy*: for the output features of every block's multi-head self-attention
(MSA), the cosine similarities between patch tokens are collected, their distribution is
estimated with a Gaussian kernel density estimate (KDE), and the differential entropy of that
distribution is maximised (its negative is minimised), next to cross entropy and a total
variation prior. ``psaq`` runs this loss densely; ``psaq-smi`` adds SMI's patch stopping
schedule (Hu et al., ICML 2024) to it, which tests SMI's claim to be plug-and-play on an
existing dense method's loss.

Two protocols (``protocol`` parameter; docs/protocols.md, section PSAQ-ViT):

- ``suite`` (default): the term below, inside the suite's own inversion loop (its optimiser,
  schedule, jitter and priors, so ``psaq`` differs from ``dense`` by this term only).
- ``official``: PSAQ-ViT's own generator, ``generate_data.py`` of zkkli/PSAQ-ViT, exactly
  (:mod:`baselines.psaq_official`): two stages of 500 iterations, Adam lr 0.2 with betas
  (0.5, 0.9), warm-up then cosine, 15 then 30 px jitter, the TV target band, and the entropy of
  the pre-projection, head-averaged attention output with bandwidth 0.01. ``stages``,
  ``stage_jitter``, ``warmup`` and ``tv_band`` shrink it for smoke-scale runs.

Choices of the ``suite`` term (documented in docs/baselines.md):

- Features: the output of each block's ``attn`` module, read with a forward hook (timm is not
  modified); the reference code hooks its own attention before the output projection and
  averages the heads, which an unmodified timm model does not expose. Prefix tokens (CLS,
  registers) are dropped, and only the tokens in the sequence - the kept patches - take part.
- Pairs: distinct patch pairs i < j (the reference also counts each pair twice and the
  self-similarities, which are always 1). At most ``max_pairs`` pairs per block and sample,
  a seeded random subset (shared by the batch) when there are more.
- KDE: Gaussian kernel of bandwidth ``bandwidth`` on ``points`` equally spaced points over
  ``grid_range`` (the whole cosine range [-1, 1] by default, padded by three bandwidths, so
  the estimate is comparable across iterations), computed by linear binning (exact to second
  order in the grid spacing, O(P) instead of O(P * points)); entropy by the trapezoid rule
  of ``-p log p`` with ``p`` offset by ``density_floor`` as in the reference code. The
  reference evaluates the exact KDE at 10 points between the batch's smallest and largest
  similarity with bandwidth 0.01: set ``grid_range`` to ``null``, ``points`` to 10,
  ``bandwidth`` to 0.01 and ``binned`` to false to get that.
- Weight: the per-sample loss is ``-weight * sum over blocks of the entropy``; the reference
  weighs it 1.0 against cross entropy 1.0. Cross entropy and the total-variation prior are
  the loop's own (``InversionConfig``), so ``psaq`` differs from ``dense`` by this term only.
- Cost: the similarity matrix is a batched matmul, which the FLOP counter counts; the KDE's
  elementwise kernel evaluations are not counted, like every other elementwise op (softmax,
  GELU, norms) in the suite's FLOP figures.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from baselines import psaq_official
from smi.errors import SMIError
from smi.inversion import InversionResult, invert
from smi.inversion.policies import AttentionStopping
from smi.methods import ScheduleParams
from smi.methods.registry import InversionMethod, InversionRequest, register_method
from smi.sparse_vit import TokenSubsetViT

#: The fixed evaluation grid extends this many bandwidths beyond ``grid_range``.
GRID_PADDING = 3.0


@dataclass(frozen=True)
class PSAQParams:
    """Parameters of the patch-similarity entropy term (see the module docstring).

    Attributes:
        weight: Weight of the negative entropy (reference: 1.0).
        bandwidth: Gaussian kernel bandwidth of the KDE on cosine similarities.
        points: Evaluation points of the KDE.
        grid_range: (low, high) of the evaluation points, or ``None`` for the batch's
            smallest to largest similarity (as the reference code).
        max_pairs: Most patch pairs per block and sample entering the KDE (seeded subsample).
        binned: Linearly binned KDE (fast, see :func:`kde_density`) instead of the exact sum.
        density_floor: Added to the density before the logarithm (reference: 1e-4).
        protocol: ``suite`` (the term in the suite's loop) or ``official`` (PSAQ-ViT's own
            generator; the settings above are then the official ones and may not be changed).
        stages: ``official`` only: iterations of each stage (official (500, 500)).
        stage_jitter: ``official`` only: largest roll in pixels per stage (official (15, 30)).
        warmup: ``official`` only: learning-rate warm-up iterations of each stage (official 100).
        tv_band: ``official`` only: band of the TV target (official [2500, 3000]).
    """

    weight: float = 1.0
    bandwidth: float = 0.05
    points: int = 128
    grid_range: tuple[float, float] | None = (-1.0, 1.0)
    max_pairs: int = 2048
    binned: bool = True
    density_floor: float = 1e-4
    protocol: str = "suite"
    stages: tuple[int, ...] = psaq_official.STAGES
    stage_jitter: tuple[int, ...] = psaq_official.STAGE_JITTER
    warmup: int = psaq_official.WARMUP
    tv_band: tuple[float, float] = psaq_official.TV_BAND

    #: Settings of one protocol that the other does not read (a changed one is an error).
    SUITE_ONLY = ("weight", "bandwidth", "points", "grid_range", "max_pairs", "binned", "density_floor")
    OFFICIAL_ONLY = ("stages", "stage_jitter", "warmup", "tv_band")

    def __post_init__(self) -> None:
        self._check_protocol()
        if self.weight < 0:
            raise SMIError(f"psaq weight must be >= 0, got {self.weight}.")
        if not self.bandwidth > 0:
            raise SMIError(f"psaq bandwidth must be > 0, got {self.bandwidth}.")
        if self.points < 2:
            raise SMIError(f"psaq points must be >= 2 to integrate the density, got {self.points}.")
        if self.max_pairs < 1:
            raise SMIError(f"psaq max_pairs must be >= 1, got {self.max_pairs}.")
        if self.grid_range is not None and (len(self.grid_range) != 2 or not self.grid_range[0] < self.grid_range[1]):
            raise SMIError(f"psaq grid_range must be [low, high] with low < high (or null), got {self.grid_range}.")
        if not self.density_floor > 0:
            raise SMIError(f"psaq density_floor must be > 0, got {self.density_floor}.")

    def _check_protocol(self) -> None:
        if self.protocol not in ("suite", "official"):
            raise SMIError(f"psaq protocol must be 'suite' or 'official', got {self.protocol!r}.")
        defaults = PSAQParams.__dataclass_fields__
        ignored = self.SUITE_ONLY if self.protocol == "official" else self.OFFICIAL_ONLY
        changed = [name for name in ignored if getattr(self, name) != defaults[name].default]
        if changed:
            raise SMIError(
                f"psaq parameter(s) {changed} are not used by protocol {self.protocol!r}; "
                f"remove them or set protocol to {'suite' if self.protocol == 'official' else 'official'}."
            )
        stages, jitter = tuple(self.stages), tuple(self.stage_jitter)
        if not stages or any(int(s) != s or s < 1 for s in stages):
            raise SMIError(f"psaq stages must be positive iteration counts, got {list(stages)}.")
        if len(jitter) != len(stages) or any(int(j) != j or j < 0 for j in jitter):
            raise SMIError(
                f"psaq stage_jitter needs one non-negative pixel limit per stage, got {list(jitter)} "
                f"for {len(stages)} stages."
            )
        if int(self.warmup) != self.warmup or not 1 <= self.warmup < min(stages):
            raise SMIError(
                f"psaq warmup must be an integer in [1, shortest stage {min(stages)}), got {self.warmup}; "
                "lower it with the stages."
            )
        if len(self.tv_band) != 2 or not 0 <= self.tv_band[0] <= self.tv_band[1]:
            raise SMIError(f"psaq tv_band must be [low, high] with 0 <= low <= high, got {list(self.tv_band)}.")


def pair_similarities(features: torch.Tensor, max_pairs: int, generator: torch.Generator) -> torch.Tensor:
    """Cosine similarities of distinct token pairs i < j, subsampled to at most ``max_pairs``.

    Args:
        features: (B, K, D) patch-token features.
        max_pairs: Largest number of pairs kept (the same random subset for every sample).
        generator: Seeded CPU generator for the subsample.

    Returns:
        (B, P) similarities, P = min(K (K-1) / 2, max_pairs).
    """
    k = features.shape[1]
    unit = F.normalize(features, dim=-1)
    sims = unit @ unit.transpose(1, 2)  # a matmul, so the FLOP counter sees the term's main cost
    rows, cols = torch.triu_indices(k, k, offset=1, device=features.device)
    if rows.numel() > max_pairs:
        pick = torch.randperm(rows.numel(), generator=generator)[:max_pairs].to(features.device)
        rows, cols = rows[pick], cols[pick]
    return sims[:, rows, cols]


def kde_grid(samples: torch.Tensor, params: PSAQParams) -> torch.Tensor:
    """The KDE's evaluation points (``points`` values, equally spaced)."""
    if params.grid_range is not None:
        low, high = params.grid_range
        # Pad by a few bandwidths: similarities near +-1 would otherwise lose half their kernel.
        low, high = low - GRID_PADDING * params.bandwidth, high + GRID_PADDING * params.bandwidth
    else:  # the reference's choice: the batch's range, without gradient through the ends
        low, high = float(samples.detach().min()), float(samples.detach().max())
        if not high > low:
            high = low + params.bandwidth
    return torch.linspace(low, high, params.points, device=samples.device, dtype=samples.dtype)


def _gaussian(diffs: torch.Tensor, bandwidth: float) -> torch.Tensor:
    return torch.exp(-0.5 * (diffs / bandwidth) ** 2) / (bandwidth * math.sqrt(2 * math.pi))


def kde_density(samples: torch.Tensor, grid: torch.Tensor, bandwidth: float, binned: bool) -> torch.Tensor:
    """Gaussian KDE of each row of ``samples`` evaluated on ``grid``.

    Args:
        samples: (B, P) values.
        grid: (M,) equally spaced evaluation points covering the samples.
        bandwidth: Kernel standard deviation.
        binned: Use linear binning (Silverman, 1982): each sample's unit mass is split between
            its two neighbouring grid points in proportion to its distance, and the binned
            masses are smoothed with the kernel sampled on the grid. Cost O(B P + B M^2)
            instead of O(B P M); the error is second order in the grid spacing, and the
            gradient w.r.t. a sample is the kernel's finite difference across its cell.

    Returns:
        (B, M) densities.
    """
    if not binned:
        return _gaussian(grid.view(1, -1, 1) - samples.unsqueeze(1), bandwidth).mean(-1)
    m = grid.shape[0]
    spacing = (grid[-1] - grid[0]) / (m - 1)
    position = ((samples - grid[0]) / spacing).clamp(0, m - 1)
    left = position.detach().floor().clamp(max=m - 2).long()
    right_share = position - left  # carries the gradient
    mass = samples.new_zeros(samples.shape[0], m)
    mass = mass.scatter_add(1, left, 1 - right_share).scatter_add(1, left + 1, right_share) / samples.shape[1]
    kernel = _gaussian(grid.view(-1, 1) - grid.view(1, -1), bandwidth)  # (M, M), symmetric
    return mass @ kernel


def kde_entropy(samples: torch.Tensor, params: PSAQParams) -> torch.Tensor:
    """Differential entropy of a Gaussian KDE of each row of ``samples``.

    Args:
        samples: (B, P) values.
        params: KDE settings (bandwidth, points, grid range, binning, density floor).

    Returns:
        (B,) entropy estimates (trapezoid rule of ``-p log p`` on the evaluation grid).
    """
    grid = kde_grid(samples, params)
    p = kde_density(samples, grid, params.bandwidth, params.binned) + params.density_floor
    return torch.trapezoid(-p * torch.log(p), grid, dim=-1)


class PatchSimilarityEntropy:
    """LossTerm: ``-weight * sum_blocks H(similarities of the block's MSA output tokens)``.

    Register with the inversion loop as a loss term; it hooks every block's ``attn`` module
    while the loop's forward pass runs and computes the per-sample loss afterwards.

    Args:
        params: Term settings.
        seed: Seed of the pair subsample.
    """

    def __init__(self, params: PSAQParams, seed: int = 0) -> None:
        self.params = params
        self.generator = torch.Generator().manual_seed(seed)
        self._features: list[torch.Tensor] = []
        self._prefix = 0

    @contextlib.contextmanager
    def watch(self, vit: TokenSubsetViT) -> Iterator[None]:
        """Record the output of every block's attention module during the block."""
        self._features = []
        self._prefix = vit.num_prefix_tokens
        handles = []
        for index, block in enumerate(vit.model.blocks):
            attn = getattr(block, "attn", None)
            if attn is None:
                raise SMIError(
                    f"block {index} of the teacher has no 'attn' module; "
                    "the PSAQ loss needs timm's standard ViT blocks."
                )
            handles.append(attn.register_forward_hook(self._record))
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()

    def _record(self, _module: torch.nn.Module, _args: tuple, output: torch.Tensor) -> None:
        self._features.append(output)

    def entropies(self) -> torch.Tensor:
        """(B, blocks) patch-similarity entropies of the last watched forward pass."""
        if not self._features:
            raise RuntimeError("PatchSimilarityEntropy.loss() called without a watched forward pass")
        values = []
        for out in self._features:
            tokens = out[:, self._prefix :]
            if tokens.shape[1] < 2:  # one patch left: no pair, no distribution
                values.append(tokens.new_zeros(tokens.shape[0]))
                continue
            values.append(kde_entropy(pair_similarities(tokens, self.params.max_pairs, self.generator), self.params))
        return torch.stack(values, dim=1)

    def loss(self) -> torch.Tensor:
        """Per-sample loss (B,): the weighted negative entropy summed over blocks."""
        entropy = self.entropies()
        self._features = []  # free the activations; the graph keeps what backward needs
        return -self.params.weight * entropy.sum(dim=1)


@register_method("psaq")
class PSAQInversion(InversionMethod):
    """Dense inversion with the PSAQ-ViT patch-similarity entropy term."""

    Params = PSAQParams

    def invert(self, request: InversionRequest) -> list[InversionResult]:
        if self.params.protocol == "official":
            p = self.params
            run = psaq_official.OfficialPSAQRun(
                request.teacher,
                len(request.targets),
                request.config,
                tuple(p.stages),
                tuple(p.stage_jitter),
                int(p.warmup),
                tuple(p.tv_band),
                request.seed,
                request.device,
                request.progress,
            )
            return run.run()
        term = PatchSimilarityEntropy(self.params, request.seed)
        return invert(request, loss_terms=[term])


@dataclass(frozen=True)
class PSAQSMIParams(PSAQParams, ScheduleParams):
    """The PSAQ term's parameters plus SMI's stopping schedule (``iterations``, ``ratio``)."""

    def __post_init__(self) -> None:
        if self.protocol != "suite":
            raise SMIError(
                "psaq-smi is the suite's extension (no official code exists); it takes protocol 'suite' only."
            )
        PSAQParams.__post_init__(self)
        ScheduleParams.__post_init__(self)


@register_method("psaq-smi")
class PSAQSparseInversion(InversionMethod):
    """SMI's patch stopping on the PSAQ-ViT loss (the term sees the kept tokens only)."""

    Params = PSAQSMIParams

    def invert(self, request: InversionRequest) -> list[InversionResult]:
        term = PatchSimilarityEntropy(self.params, request.seed)
        return invert(request, policy=AttentionStopping(self.params.schedule()), loss_terms=[term])
