"""The model-inversion loop shared by dense inversion, SMI and the other methods.

Follows DeepInversion (Yin et al., CVPR 2020) without its BatchNorm prior (ViTs have none), as
used by Sparse Model Inversion (Hu et al., ICML 2024): a batch of images initialised from
N(0, 1) in the teacher's normalised space is optimised with Adam on cross entropy to the target
labels plus image priors, under a random whole-patch jitter and flip each iteration, clipped to
the valid pixel range after each step. A :class:`~smi.policies.PatchPolicy` decides which
patches stay active; stopped patches leave the token sequence (no forward, no backward) and are
never updated again. Dense inversion is the same loop with :class:`~smi.policies.NoStopping`.

The optimised variable is the batch's *active patches* (B, K, C, ph, pw), not the whole image:
a stopped patch is moved to a frozen store and leaves the optimiser (its Adam moments are
narrowed with it), so every per-iteration operation - Adam, clipping, the priors, the best-image
record - shrinks with the active set. Whole images are assembled only for outputs.

Costs are measured as the design's protocol asks: wall time around the whole loop after a
warm-up (CUDA synchronised at both ends); FLOPs and saved-activation bytes of one
forward+backward at every distinct active token count, replayed after the timed loop so the
counters never slow it down; on CUDA the peak allocated memory per phase (before and after the
last stop).

The timed loop never synchronises the host with the device in an ordinary iteration: no
boolean-mask indexing (the best-image record uses ``torch.where``), no ``.item()``, ``int()``
or ``bool()`` on a device tensor; only stopping iterations read values back (to pick patches).
``tests/test_inversion_sync.py`` counts such operations per iteration.

This module is ``protocol: suite``; ``protocol: official`` (the official code's loop on whole
images, docs/protocols.md) is :mod:`smi.official`, selected by :func:`invert`.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Callable, Iterator, Protocol

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from smi.augment import JitterSampler, PatchJitter
from smi.errors import SMIError
from smi.measure import count_flops, count_forward_flops, saved_activation_bytes, start_timed_loop
from smi.policies import NoStopping, PatchPolicy
from smi.priors import PatchNeighbours, PriorWeights, patch_priors
from smi.sparse_vit import TokenSubsetViT, gather_patches, mask_to_pixels, mask_to_positions, scatter_patches
from smi.types import Teacher

#: Inversion protocols (docs/protocols.md): the official code's behaviour, or the suite's own.
PROTOCOLS = ("suite", "official")
#: Numeric precisions of the teacher's forward pass; ``bf16`` runs it under ``torch.autocast``.
PRECISIONS = ("fp32", "bf16")


@dataclass(frozen=True)
class InversionConfig:
    """Optimisation budget and hyper-parameters of one inversion run.

    Attributes:
        iterations: Optimisation steps (paper: 4000).
        batch_size: Images optimised together.
        lr: Adam learning rate (paper: 0.25).
        betas: Adam betas (paper: (0.5, 0.99)).
        tv_l2: Weight of the L2 total-variation prior (paper: 1e-4).
        tv_l1: Weight of the L1 total-variation prior.
        l2: Weight of the L2 image-norm prior.
        jitter: Largest roll as a fraction of the image side (paper: 1/8), in whole patches.
        flip: Random horizontal flips.
        keep_best: Return, per sample, the images of the lowest loss since the last change of
            the active set (DeepInversion keeps the best images); else the final ones.
        warmup_iterations: Untimed forward+backward passes before the clock starts.
        measure_costs: Count FLOPs and saved activation bytes (a few extra untimed passes).
        protocol: ``suite`` (this module's loop) or ``official`` (the official SMI code's
            behaviour, quirks included: :mod:`smi.official`; docs/protocols.md).
        precision: ``fp32``, or ``bf16`` to run the teacher's forward (and so its backward)
            under ``torch.autocast`` with bfloat16, for GPUs; images, optimiser and losses stay
            fp32. FLOP counts do not change: they count operations, not their precision.
    """

    iterations: int = 4000
    batch_size: int = 32
    lr: float = 0.25
    betas: tuple[float, float] = (0.5, 0.99)
    tv_l2: float = 1e-4
    tv_l1: float = 0.0
    l2: float = 0.0
    jitter: float = 0.125
    flip: bool = True
    keep_best: bool = True
    warmup_iterations: int = 2
    measure_costs: bool = True
    protocol: str = "suite"
    precision: str = "fp32"

    def __post_init__(self) -> None:
        if self.iterations < 1:
            raise SMIError(f"iterations must be >= 1, got {self.iterations}")
        if self.batch_size < 1:
            raise SMIError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.lr <= 0:
            raise SMIError(f"lr must be > 0, got {self.lr}")
        if not 0.0 <= self.jitter < 1.0:
            raise SMIError(f"jitter must be a fraction of the image side in [0, 1), got {self.jitter}")
        if self.protocol not in PROTOCOLS:
            raise SMIError(f"inversion protocol must be one of {list(PROTOCOLS)}, got {self.protocol!r}.")
        if self.precision not in PRECISIONS:
            raise SMIError(f"inversion precision must be one of {list(PRECISIONS)}, got {self.precision!r}.")

    @property
    def priors(self) -> PriorWeights:
        """The prior weights as one object."""
        return PriorWeights(tv_l2=self.tv_l2, tv_l1=self.tv_l1, l2=self.l2)


class LossTerm(Protocol):
    """An extra per-sample loss computed from what the model does in a forward pass.

    Methods like PSAQ-ViT add a loss on intermediate features; they observe the model through
    forward hooks while ``watch`` is active and return the per-sample loss afterwards.
    """

    def watch(self, vit: TokenSubsetViT) -> contextlib.AbstractContextManager[None]:
        """Context in which the term records what it needs from the forward pass."""

    def loss(self) -> torch.Tensor:
        """Per-sample loss (B,) from the last watched forward pass."""


@dataclass
class InversionStats:
    """Measured cost of a run (see the module docstring for the protocol)."""

    wall_time_s: float
    iterations: int
    batch_size: int
    num_patches: int
    active_tokens: list[int]
    flops_total: int
    flops_by_tokens: dict[int, int]
    peak_memory_bytes: int
    peak_memory_after_last_stop_bytes: int
    memory_kind: str
    loss_curve: list[float]
    decision_iterations: list[int]


@dataclass
class InversionResult:
    """Output images of one batch.

    Attributes:
        images: (M, C, H, W) pixel space [0, 1], stopped patches black.
        keep_masks: (M, gh, gw) bool.
        targets: (M,) labels.
        stats: Costs of the run.
    """

    images: torch.Tensor
    keep_masks: torch.Tensor
    targets: torch.Tensor
    stats: InversionStats
    extra: dict = field(default_factory=dict)


class _Measurement:
    """Counts FLOPs and saved bytes once per (active count, scoring) shape."""

    def __init__(self, enabled: bool, parameters: list[torch.Tensor]) -> None:
        self.enabled = enabled
        self.parameters = parameters
        self.flops: dict[tuple[int, bool], int] = {}
        self.saved: dict[int, int] = {}


@dataclass(frozen=True)
class ActiveLayout:
    """Where the active patches of a batch sit; recomputed only when the active set changes.

    Attributes:
        positions: (B, K) row-major grid positions of the active patches, ascending.
        neighbours: Their grid neighbours in the active list (for the priors).
    """

    positions: torch.Tensor
    neighbours: PatchNeighbours

    @classmethod
    def of(cls, positions: torch.Tensor, grid: tuple[int, int]) -> "ActiveLayout":
        return cls(positions, PatchNeighbours.from_positions(positions, grid))


def _narrow_optimizer(
    optimizer: torch.optim.Adam, patches: torch.Tensor, keep: torch.Tensor
) -> tuple[torch.Tensor, torch.optim.Adam]:
    """Continue Adam on the subset ``keep`` (B, K') of the active patches (B, K, ...).

    Adam is elementwise, so carrying the step count and the kept entries of both moments over
    to a new, smaller parameter continues every kept pixel's trajectory exactly; the stopped
    ones simply leave.

    Returns:
        The new parameter and its optimiser.
    """
    narrowed = gather_patches(patches.detach(), keep).requires_grad_(True)
    group = optimizer.param_groups[0]
    options = {key: value for key, value in group.items() if key != "params"}
    successor = torch.optim.Adam([narrowed], **options)
    state = optimizer.state.get(patches)
    if state:
        successor.state[narrowed] = {
            key: gather_patches(value, keep) if key.startswith("exp_avg") else value.clone() for key, value in state.items()
        }
    return narrowed, successor


def forward_precision(config: InversionConfig, device: torch.device) -> contextlib.AbstractContextManager:
    """The autocast context of the teacher's forward (a no-op at ``fp32``)."""
    if config.precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


@contextlib.contextmanager
def watch_terms(terms: list[LossTerm], vit: TokenSubsetViT) -> Iterator[None]:
    """Every loss term watches the forward passes run inside this context."""
    with contextlib.ExitStack() as stack:
        for term in terms:
            stack.enter_context(term.watch(vit))
        yield


class InversionRun:
    """One inversion of a batch of targets; call :meth:`run`."""

    def __init__(
        self,
        teacher: Teacher,
        targets: torch.Tensor,
        config: InversionConfig,
        policy: PatchPolicy | None = None,
        loss_terms: list[LossTerm] | None = None,
        seed: int = 0,
        device: torch.device | str = "cpu",
        progress: bool = True,
        on_iteration: Callable[[int, torch.Tensor, torch.Tensor], None] | None = None,
    ) -> None:
        self.on_iteration = on_iteration
        self.device = torch.device(device)
        self.teacher = teacher
        self.vit = TokenSubsetViT(teacher.model).to(self.device).eval()
        for p in self.vit.parameters():
            p.requires_grad_(False)
        self.targets = targets.to(self.device)
        if self.targets.ndim != 1 or int(self.targets.max()) >= teacher.num_classes or int(self.targets.min()) < 0:
            raise SMIError(f"targets must be class indices in [0, {teacher.num_classes}), one per image.")
        self.config = config
        self.policy = policy or NoStopping()
        self.loss_terms = list(loss_terms or [])
        self.seed = seed
        self.progress = progress
        self.generator = torch.Generator().manual_seed(seed)
        c, h, w = teacher.input_size
        self.shape = (int(self.targets.shape[0]), c, h, w)
        self.sampler = JitterSampler.for_image(h, self.vit.patch_size[0], config.jitter, config.flip)
        mean, std = teacher.mean_std(self.device)
        # Valid pixel range in normalised space, shaped to broadcast over (B, K, C, ph, pw).
        self.lower = ((0 - mean) / std).reshape(1, 1, c, 1, 1)
        self.upper = ((1 - mean) / std).reshape(1, 1, c, 1, 1)
        self.measure = _Measurement(config.measure_costs, list(self.vit.parameters()))

    # ------------------------------------------------------------------ one step
    def _loss(
        self, patches: torch.Tensor, layout: ActiveLayout, jitter: PatchJitter, scoring: bool
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Mean loss, per-sample loss and (if scoring) CLS attention (B, N) of one forward.

        Args:
            patches: The active patches (B, K, C, ph, pw), normalised.
            layout: Their grid positions and neighbours.
            jitter: This iteration's whole-patch roll and flip.
            scoring: Also return the last block's CLS attention, scattered onto the grid.
        """
        displayed = jitter.positions(layout.positions, self.vit.grid_size)
        with watch_terms(self.loss_terms, self.vit), forward_precision(self.config, self.device):
            out = self.vit.forward_patches(jitter.patch_content(patches), displayed, scoring)
        per_sample = F.cross_entropy(out.logits.float(), self.targets, reduction="none")
        # The priors see the un-jittered image; their cost scales with the active patches too.
        per_sample = per_sample + patch_priors(patches, layout.neighbours, self.shape[1:], self.config.priors)
        for term in self.loss_terms:
            per_sample = per_sample + term.loss()
        scores = None
        if out.cls_attention is not None:
            scores = torch.full((patches.shape[0], self.vit.num_patches), float("-inf"), device=patches.device)
            scores.scatter_(1, layout.positions, out.cls_attention.float())
        return per_sample.mean(), per_sample.detach(), scores

    def image_loss(
        self, images: torch.Tensor, active: torch.Tensor, jitter: PatchJitter, scoring: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """The loop's loss on whole images whose active patches ``active`` (B, N) selects.

        The same computation as an iteration (the patches are gathered from ``images``, so
        gradients reach the images); for checks and for measuring a step in isolation.
        """
        layout = ActiveLayout.of(mask_to_positions(active), self.vit.grid_size)
        patches = gather_patches(self.vit.patchify(images), layout.positions)
        return self._loss(patches, layout, jitter, scoring)

    def _first_patches(self, count: int) -> tuple[torch.Tensor, ActiveLayout]:
        """Zero active patches and the layout of the first ``count`` grid positions of every sample.

        A step's cost depends on the active count only, not on which patches are active.
        """
        b, c, _, _ = self.shape
        ph, pw = self.vit.patch_size
        positions = torch.arange(count, device=self.device).expand(b, count)
        return torch.zeros(b, count, c, ph, pw, device=self.device), ActiveLayout.of(positions, self.vit.grid_size)

    def step_flops(self, count: int, scoring: bool = False) -> int:
        """FLOPs of one forward+backward step with ``count`` active patches per sample (cached).

        The first call per count also records the saved-activation bytes of a non-scoring step.
        """
        key = (count, scoring)
        if key not in self.measure.flops:
            self.measure.flops[key] = count_flops(lambda: self._probe_loss(count, scoring))
            if not scoring and count not in self.measure.saved:
                with saved_activation_bytes(exclude=self.measure.parameters) as saved:
                    loss = self._probe_loss(count, False)
                self.measure.saved[count] = saved["bytes"]
                del loss
        return self.measure.flops[key]

    def _probe_loss(self, count: int, scoring: bool) -> torch.Tensor:
        """The loss of one un-augmented step with ``count`` active patches, on fresh zero inputs."""
        zeros, layout = self._first_patches(count)
        return self._loss(zeros.requires_grad_(True), layout, PatchJitter(), scoring)[0]

    def step_forward_flops(self, count: int) -> int:
        """FLOPs of the forward pass alone (loss included) with ``count`` active patches."""
        patches, layout = self._first_patches(count)
        return count_forward_flops(lambda: self._loss(patches, layout, PatchJitter(), False))

    # ------------------------------------------------------------------ loop
    def run(self) -> list[InversionResult]:
        """Optimise the batch; returns one result per emission (one for non-emitting policies)."""
        cfg, device = self.config, self.device
        b = self.shape[0]
        n = self.vit.num_patches
        init = torch.randn(self.shape, generator=self.generator).to(device)
        # Every patch's latest content; a stopped patch's entry is final.
        store = self.vit.patchify(init).contiguous()
        active = torch.ones(b, n, dtype=torch.bool, device=device)
        layout = ActiveLayout.of(mask_to_positions(active), self.vit.grid_size)
        patches = store.clone().requires_grad_(True)
        decisions = set(self.policy.decision_iterations(cfg.iterations))
        optimizer = torch.optim.Adam([patches], lr=cfg.lr, betas=cfg.betas, fused=device.type in ("cpu", "cuda"))
        best = patches.detach().clone()
        best_loss = torch.full((b,), float("inf"), device=device)
        losses = torch.zeros(cfg.iterations, device=device)
        active_tokens: list[int] = []
        emissions: list[tuple[torch.Tensor, torch.Tensor]] = []
        cuda = device.type == "cuda"

        self._warm_up(patches, layout)
        watch = start_timed_loop(device)
        peak_before_last = 0
        bar = tqdm(range(cfg.iterations), desc="invert", disable=not self.progress, leave=False, mininterval=1.0)
        for t in bar:
            scoring = t in decisions and self.policy.needs_attention
            jitter = self.sampler.sample(self.generator)
            optimizer.zero_grad(set_to_none=True)
            loss, per_sample, scores = self._loss(patches, layout, jitter, scoring)
            loss.backward()
            if cfg.keep_best:
                # torch.where, not boolean indexing: indexing by a mask needs its count on the host.
                improved = per_sample < best_loss
                best_loss = torch.where(improved, per_sample, best_loss)
                best = torch.where(improved.view(-1, 1, 1, 1, 1), patches.detach(), best)
            optimizer.step()
            with torch.no_grad():
                patches.clamp_(self.lower, self.upper)
            losses[t] = loss.detach()
            active_tokens.append(layout.positions.shape[1])
            if self.on_iteration is not None:
                self.on_iteration(t, self._assemble(store, patches.detach(), layout), active)
            if t in decisions:
                step = self.policy.decide(t, active, scores, self.generator)
                if step.emit is not None:
                    chosen = best if cfg.keep_best else patches.detach()
                    emissions.append((self._snapshot(store, chosen, layout), step.emit.clone()))
                if not torch.equal(step.active, active):
                    if not bool(step.active.sum(1).eq(step.active[0].sum()).all()) or not bool(step.active[0].any()):
                        raise SMIError("a patch policy must keep the same, non-zero number of patches per sample")
                    if bool((step.active & ~active).any()):
                        raise SMIError("a patch policy may only stop patches, never restart a stopped one")
                    # The active patches' content goes to the store: final for those that stop now.
                    store = scatter_patches(store, layout.positions, patches.detach())
                    keep = active.cumsum(1).sub(1).masked_select(step.active).view(b, -1)
                    patches, optimizer = _narrow_optimizer(optimizer, patches, keep)
                    active = step.active
                    layout = ActiveLayout.of(mask_to_positions(active), self.vit.grid_size)
                    # Losses over another token set are not comparable: restart the best-image record.
                    best = patches.detach().clone()
                    best_loss.fill_(float("inf"))
                    if cuda:
                        peak_before_last = max(peak_before_last, torch.cuda.max_memory_allocated(device))
                        torch.cuda.reset_peak_memory_stats(device)
        watch.stop()
        bar.close()
        final = best if cfg.keep_best else patches.detach()
        emissions.append((self._snapshot(store, final, layout), active.clone()))
        stats = self._stats(watch.elapsed, active_tokens, losses, sorted(decisions), peak_before_last)
        return [self._result(images, mask, stats) for images, mask in emissions]

    def _warm_up(self, patches: torch.Tensor, layout: ActiveLayout) -> None:
        """Untimed passes so that first-call allocation and kernel selection stay off the clock."""
        for _ in range(self.config.warmup_iterations):
            scratch = patches.detach().clone().requires_grad_(True)
            self._loss(scratch, layout, PatchJitter(), False)[0].backward()

    def _assemble(self, store: torch.Tensor, patches: torch.Tensor, layout: ActiveLayout) -> torch.Tensor:
        """Whole normalised images (B, C, H, W): the store with the active patches put in place."""
        return self.vit.unpatchify(scatter_patches(store, layout.positions, patches))

    def _snapshot(self, store: torch.Tensor, patches: torch.Tensor, layout: ActiveLayout) -> torch.Tensor:
        return self.teacher.denormalize(self._assemble(store, patches.detach(), layout)).clamp(0, 1)

    def _result(self, images: torch.Tensor, mask: torch.Tensor, stats: InversionStats) -> InversionResult:
        grid_mask = mask.view(-1, *self.vit.grid_size)
        images = images * mask_to_pixels(grid_mask, self.vit.patch_size).to(images.dtype)  # stopped patches black
        return InversionResult(images.cpu(), grid_mask.cpu(), self.targets.cpu(), stats)

    def _stats(
        self, wall: float, active_tokens: list[int], losses: torch.Tensor, decisions: list[int], peak_before_last: int
    ) -> InversionStats:
        """Replay one step per distinct token count to count FLOPs and memory (untimed)."""
        n = self.vit.num_patches
        decisions_set = set(decisions) if self.policy.needs_attention else set()
        flops_total = 0
        by_tokens: dict[int, int] = {}
        if self.measure.enabled:
            by_tokens = {count: self.step_flops(count) for count in sorted(set(active_tokens))}
            flops_total = sum(self.step_flops(count, t in decisions_set) for t, count in enumerate(active_tokens))
        if self.device.type == "cuda":
            last = torch.cuda.max_memory_allocated(self.device)
            peak, after, kind = max(peak_before_last, last), last, "cuda_peak_allocated"
        else:
            saved = self.measure.saved
            final_count = active_tokens[-1] if active_tokens else n
            peak = max(saved.values()) if saved else 0
            after = saved.get(final_count, 0)
            kind = "cpu_saved_activations"
        return InversionStats(
            wall_time_s=wall,
            iterations=self.config.iterations,
            batch_size=self.shape[0],
            num_patches=n,
            active_tokens=active_tokens,
            flops_total=flops_total,
            flops_by_tokens=by_tokens,
            peak_memory_bytes=int(peak),
            peak_memory_after_last_stop_bytes=int(after),
            memory_kind=kind,
            loss_curve=[float(v) for v in losses.cpu()],
            decision_iterations=decisions,
        )


def invert(
    teacher: Teacher,
    targets: torch.Tensor,
    config: InversionConfig,
    policy: PatchPolicy | None = None,
    loss_terms: list[LossTerm] | None = None,
    seed: int = 0,
    device: torch.device | str = "cpu",
    progress: bool = True,
) -> list[InversionResult]:
    """Run one inversion of ``targets`` (a batch) under ``config.protocol``.

    ``suite``: :class:`InversionRun`; ``official``: :class:`smi.official.OfficialInversionRun`.
    """
    return run_class(config)(teacher, targets, config, policy, loss_terms, seed, device, progress).run()


def run_class(config: InversionConfig) -> type[InversionRun]:
    """The loop class of ``config.protocol``."""
    if config.protocol == "official":
        from smi.official import OfficialInversionRun  # imports this module

        return OfficialInversionRun
    return InversionRun
