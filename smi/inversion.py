"""The model-inversion loop shared by dense inversion, SMI and the other methods.

Follows DeepInversion (Yin et al., CVPR 2020) without its BatchNorm prior (ViTs have none), as
used by Sparse Model Inversion (Hu et al., ICML 2024): a batch of images initialised from
N(0, 1) in the teacher's normalised space is optimised with Adam on cross entropy to the target
labels plus image priors, under a random whole-patch jitter and flip each iteration, clipped to
the valid pixel range after each step. A :class:`~smi.policies.PatchPolicy` decides which
patches stay active; stopped patches leave the token sequence (no forward, no backward) and are
never updated again. Dense inversion is the same loop with :class:`~smi.policies.NoStopping`.

Costs are measured as the design's protocol asks: wall time around the whole loop after a
warm-up; FLOPs and saved-activation bytes of one forward+backward at every distinct active
token count, replayed after the timed loop so the counters never slow it down.
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
from smi.measure import Stopwatch, count_flops, count_forward_flops, saved_activation_bytes
from smi.policies import NoStopping, PatchPolicy
from smi.priors import PriorWeights, patch_priors
from smi.sparse_vit import TokenSubsetViT, gather_patches, mask_to_positions
from smi.types import Teacher


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

    def __post_init__(self) -> None:
        if self.iterations < 1:
            raise SMIError(f"iterations must be >= 1, got {self.iterations}")
        if self.batch_size < 1:
            raise SMIError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.lr <= 0:
            raise SMIError(f"lr must be > 0, got {self.lr}")
        if not 0.0 <= self.jitter < 1.0:
            raise SMIError(f"jitter must be a fraction of the image side in [0, 1), got {self.jitter}")

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


def _pixel_mask(active: torch.Tensor, vit: TokenSubsetViT) -> torch.Tensor:
    """(B, N) patch mask -> (B, 1, H, W) pixel mask."""
    (ph, pw), (gh, gw) = vit.patch_size, vit.grid_size
    grid = active.view(-1, 1, gh, gw).to(torch.uint8)
    return grid.repeat_interleave(ph, dim=2).repeat_interleave(pw, dim=3).bool()


def _freeze_in_optimizer(optimizer: torch.optim.Optimizer, x: torch.Tensor, pixel_mask: torch.Tensor) -> None:
    """Make Adam leave the pixels outside ``pixel_mask`` exactly where they are from now on.

    A stopped pixel's gradient is exactly zero (it is neither gathered into a token nor part
    of a prior pair), so with its first moment zeroed Adam's update ``lr * m / (sqrt(v) + eps)``
    is exactly zero too. This costs nothing per iteration, unlike restoring the pixels.
    """
    state = optimizer.state.get(x, {})
    if "exp_avg" in state:
        state["exp_avg"].mul_(pixel_mask.to(state["exp_avg"].dtype))
    elif state:
        raise RuntimeError("patch stopping needs Adam's first-moment state to freeze stopped pixels")


@contextlib.contextmanager
def _watch_all(terms: list[LossTerm], vit: TokenSubsetViT) -> Iterator[None]:
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
        self.lower, self.upper = (0 - mean) / std, (1 - mean) / std
        self.measure = _Measurement(config.measure_costs, list(self.vit.parameters()))
        self._layout_of: torch.Tensor | None = None
        self._layout: tuple[torch.Tensor, torch.Tensor] | None = None

    # ------------------------------------------------------------------ one step
    def _loss(
        self, x: torch.Tensor, active: torch.Tensor, jitter: PatchJitter, scoring: bool
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Mean loss, per-sample loss and (if scoring) CLS attention (B, N) of one forward."""
        positions, pixel_mask = self._active_layout(active)
        patches = gather_patches(self.vit.patchify(x), positions)
        displayed = jitter.positions(positions, self.vit.grid_size)
        with _watch_all(self.loss_terms, self.vit):
            out = self.vit.forward_patches(jitter.patch_content(patches), displayed, scoring)
        per_sample = F.cross_entropy(out.logits, self.targets, reduction="none")
        # The priors see the un-jittered image; their cost scales with the kept patches too.
        per_sample = per_sample + patch_priors(
            x, patches, pixel_mask, self.vit.patch_size, self.config.priors
        )
        for term in self.loss_terms:
            per_sample = per_sample + term.loss()
        scores = None
        if out.cls_attention is not None:
            scores = torch.full(active.shape, float("-inf"), device=x.device)
            scores.scatter_(1, positions, out.cls_attention.float())
        return per_sample.mean(), per_sample.detach(), scores

    def _active_layout(self, active: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Kept positions and pixel mask of an active mask, recomputed only when the mask changes.

        The loop keeps one mask object per active set, so identity is a sufficient key.
        """
        if self._layout_of is not active:
            self._layout = (mask_to_positions(active), _pixel_mask(active, self.vit))
            self._layout_of = active
        return self._layout

    def _first_patches(self, count: int) -> torch.Tensor:
        """An active mask keeping the first ``count`` patches of every sample (costs depend on the count only)."""
        mask = torch.zeros(self.shape[0], self.vit.num_patches, dtype=torch.bool, device=self.device)
        mask[:, :count] = True
        return mask

    def step_flops(self, count: int, scoring: bool = False) -> int:
        """FLOPs of one forward+backward step with ``count`` active patches per sample (cached).

        The first call per count also records the saved-activation bytes of a non-scoring step.
        """
        key = (count, scoring)
        if key not in self.measure.flops:
            active = self._first_patches(count)
            x = torch.zeros(self.shape, device=self.device, requires_grad=True)
            self.measure.flops[key] = count_flops(lambda: self._loss(x, active, PatchJitter(), scoring)[0])
            if not scoring and count not in self.measure.saved:
                x = torch.zeros(self.shape, device=self.device, requires_grad=True)
                with saved_activation_bytes(exclude=self.measure.parameters) as saved:
                    loss = self._loss(x, active, PatchJitter(), False)[0]
                self.measure.saved[count] = saved["bytes"]
                del loss
        return self.measure.flops[key]

    def step_forward_flops(self, count: int) -> int:
        """FLOPs of the forward pass alone (loss included) with ``count`` active patches."""
        active = self._first_patches(count)
        x = torch.zeros(self.shape, device=self.device)
        return count_forward_flops(lambda: self._loss(x, active, PatchJitter(), False))

    # ------------------------------------------------------------------ loop
    def run(self) -> list[InversionResult]:
        """Optimise the batch; returns one result per emission (one for non-emitting policies)."""
        cfg, device = self.config, self.device
        b = self.shape[0]
        n = self.vit.num_patches
        x = torch.randn(self.shape, generator=self.generator).to(device).requires_grad_(True)
        active = torch.ones(b, n, dtype=torch.bool, device=device)
        decisions = set(self.policy.decision_iterations(cfg.iterations))
        optimizer = torch.optim.Adam([x], lr=cfg.lr, betas=cfg.betas, fused=x.device.type in ("cpu", "cuda"))
        best = x.detach().clone()
        best_loss = torch.full((b,), float("inf"), device=device)
        losses = torch.zeros(cfg.iterations, device=device)
        active_tokens: list[int] = []
        emissions: list[tuple[torch.Tensor, torch.Tensor]] = []
        cuda = device.type == "cuda"

        self._warm_up(x, active)
        if cuda:
            torch.cuda.reset_peak_memory_stats(device)
        peak_before_last = 0
        watch = Stopwatch(device)
        watch.start()
        bar = tqdm(range(cfg.iterations), desc="invert", disable=not self.progress, leave=False, mininterval=1.0)
        for t in bar:
            scoring = t in decisions and self.policy.needs_attention
            jitter = self.sampler.sample(self.generator)
            optimizer.zero_grad(set_to_none=True)
            loss, per_sample, scores = self._loss(x, active, jitter, scoring)
            loss.backward()
            if cfg.keep_best:
                improved = per_sample < best_loss
                best_loss = torch.where(improved, per_sample, best_loss)
                best[improved] = x.detach()[improved]
            optimizer.step()
            with torch.no_grad():
                # Stopped pixels are in range already, so clamping leaves them as they are.
                x.clamp_(self.lower, self.upper)
            losses[t] = loss.detach()
            active_tokens.append(int(active[0].sum()))
            if self.on_iteration is not None:
                self.on_iteration(t, x.detach(), active)
            if t in decisions:
                step = self.policy.decide(t, active, scores, self.generator)
                if step.emit is not None:
                    emissions.append((self._snapshot(best if cfg.keep_best else x.detach()), step.emit.clone()))
                if not torch.equal(step.active, active):
                    if not bool(step.active.sum(1).eq(step.active[0].sum()).all()) or not bool(step.active[0].any()):
                        raise SMIError("a patch policy must keep the same, non-zero number of patches per sample")
                    _freeze_in_optimizer(optimizer, x, _pixel_mask(step.active, self.vit))
                    # Losses over another token set are not comparable: restart the best-image record.
                    best.copy_(x.detach())
                    best_loss.fill_(float("inf"))
                    if cuda:
                        peak_before_last = max(peak_before_last, torch.cuda.max_memory_allocated(device))
                        torch.cuda.reset_peak_memory_stats(device)
                    active = step.active
        watch.stop()
        bar.close()
        final = best if cfg.keep_best else x.detach()
        emissions.append((self._snapshot(final), active.clone()))
        stats = self._stats(watch.elapsed, active_tokens, losses, sorted(decisions), peak_before_last)
        return [self._result(images, mask, stats) for images, mask in emissions]

    def _warm_up(self, x: torch.Tensor, active: torch.Tensor) -> None:
        """Untimed passes so that first-call allocation and kernel selection stay off the clock."""
        for _ in range(self.config.warmup_iterations):
            scratch = x.detach().clone().requires_grad_(True)
            self._loss(scratch, active, PatchJitter(), False)[0].backward()

    def _snapshot(self, x: torch.Tensor) -> torch.Tensor:
        return self.teacher.denormalize(x.detach()).clamp(0, 1)

    def _result(self, images: torch.Tensor, mask: torch.Tensor, stats: InversionStats) -> InversionResult:
        gh, gw = self.vit.grid_size
        images = images * _pixel_mask(mask, self.vit).to(images.dtype)  # stopped patches black
        return InversionResult(images.cpu(), mask.view(-1, gh, gw).cpu(), self.targets.cpu(), stats)

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
    """Run one inversion of ``targets`` (a batch); see :class:`InversionRun`."""
    return InversionRun(teacher, targets, config, policy, loss_terms, seed, device, progress).run()
