"""The model-inversion loop shared by dense inversion, SMI and the other methods.

Follows DeepInversion (Yin et al., CVPR 2020) without its BatchNorm prior (ViTs have none), as
used by Sparse Model Inversion (Hu et al., ICML 2024): a batch of images initialised from
N(0, 1) in the teacher's normalised space is optimised with Adam on cross entropy to the target
labels plus image priors, under a random whole-patch jitter and flip each iteration, clipped to
the valid pixel range after each step. A :class:`~smi.inversion.policies.PatchPolicy` decides which
patches stay active; stopped patches leave the token sequence (no forward, no backward) and are
never updated again. Dense inversion is the same loop with :class:`~smi.inversion.policies.NoStopping`.

The optimised variable is the batch's *active patches* (B, K, C, ph, pw), not the whole image:
a stopped patch is moved to a frozen store and leaves the optimiser (its Adam moments are
narrowed with it), so every per-iteration operation - Adam, clipping, the priors, the best-image
record - shrinks with the active set. Whole images are assembled only for outputs.

Costs are measured as the design's protocol asks (:mod:`smi.inversion.costs`): wall time around
the whole loop after a warm-up; FLOPs and memory replayed after the timed loop by a
:class:`~smi.inversion.costs.CostMeter`.

The timed loop never synchronises the host with the device in an ordinary iteration: no
boolean-mask indexing (the best-image record uses ``torch.where``), no ``.item()``, ``int()``
or ``bool()`` on a device tensor; only stopping iterations read values back (to pick patches).
``tests/test_inversion_sync.py`` counts such operations per iteration.

This module is ``protocol: suite``; ``protocol: official`` (the official code's loop on whole
images, docs/protocols.md) is :mod:`smi.inversion.official`; :func:`smi.inversion.invert` picks one.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from smi.errors import SMIError
from smi.inversion.config import InversionConfig
from smi.inversion.costs import CostMeter, start_timed_loop
from smi.inversion.jitter import JitterSampler, PatchJitter
from smi.inversion.policies import NoStopping, PatchPolicy, check_step
from smi.inversion.priors import PatchNeighbours, patch_priors
from smi.inversion.types import InversionRequest, InversionResult, InversionStats, LossTerm
from smi.sparse_vit import TokenSubsetViT, gather_patches, mask_to_pixels, mask_to_positions, scatter_patches

#: ``on_iteration(t, images, active)``: called after every step with the whole normalised
#: images (B, C, H, W) and the active mask (B, N); for tests and visualisation.
IterationHook = Callable[[int, torch.Tensor, torch.Tensor], None]


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
    def of(cls, positions: torch.Tensor, grid: tuple[int, int]) -> ActiveLayout:
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
            key: gather_patches(value, keep) if key.startswith("exp_avg") else value.clone()
            for key, value in state.items()
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


@dataclass
class _Trajectory:
    """The loop's state: what is optimised, what is frozen, and the best images so far.

    Attributes:
        store: Every patch's latest content (B, N, C, ph, pw); a stopped patch's entry is final.
        patches: The active patches (B, K, C, ph, pw), the optimised parameter.
        optimizer: Adam over ``patches``.
        active: Bool (B, N) mask of the active patches.
        layout: Their positions and neighbours.
        best: The active patches of each sample's lowest loss since the active set last changed.
        best_loss: That loss (B,).
    """

    store: torch.Tensor
    patches: torch.Tensor
    optimizer: torch.optim.Adam
    active: torch.Tensor
    layout: ActiveLayout
    best: torch.Tensor
    best_loss: torch.Tensor

    def record_best(self, per_sample: torch.Tensor) -> None:
        """Keep the current patches of every sample whose loss improved."""
        # torch.where, not boolean indexing: indexing by a mask needs its count on the host.
        improved = per_sample < self.best_loss
        self.best_loss = torch.where(improved, per_sample, self.best_loss)
        self.best = torch.where(improved.view(-1, 1, 1, 1, 1), self.patches.detach(), self.best)

    def output(self, keep_best: bool) -> torch.Tensor:
        """The active patches an emission saves: the best ones, or the current ones."""
        return self.best if keep_best else self.patches.detach()

    def narrow(self, active: torch.Tensor, grid: tuple[int, int]) -> None:
        """Stop every patch outside ``active``: its content goes to the store, and it leaves Adam."""
        b = active.shape[0]
        # The active patches' content goes to the store: final for those that stop now.
        self.store = scatter_patches(self.store, self.layout.positions, self.patches.detach())
        keep = self.active.cumsum(1).sub(1).masked_select(active).view(b, -1)
        self.patches, self.optimizer = _narrow_optimizer(self.optimizer, self.patches, keep)
        self.active = active
        self.layout = ActiveLayout.of(mask_to_positions(active), grid)
        # Losses over another token set are not comparable: restart the best-image record.
        self.best = self.patches.detach().clone()
        self.best_loss.fill_(float("inf"))


class InversionRun:
    """One inversion of a batch of targets; call :meth:`run`.

    Args:
        request: The batch, its budget, seed and device.
        policy: Which patches stay active (default: none stops, dense inversion).
        loss_terms: Extra per-sample losses.
        on_iteration: Called after every step (see :data:`IterationHook`).
    """

    def __init__(
        self,
        request: InversionRequest,
        *,
        policy: PatchPolicy | None = None,
        loss_terms: list[LossTerm] | None = None,
        on_iteration: IterationHook | None = None,
    ) -> None:
        teacher, config = request.teacher, request.config
        self.on_iteration = on_iteration
        self.device = torch.device(request.device)
        self.teacher = teacher
        self.vit = TokenSubsetViT(teacher.model).to(self.device).eval()
        for p in self.vit.parameters():
            p.requires_grad_(False)
        self.targets = request.targets.to(self.device)
        if self.targets.ndim != 1 or int(self.targets.max()) >= teacher.num_classes or int(self.targets.min()) < 0:
            raise SMIError(f"targets must be class indices in [0, {teacher.num_classes}), one per image.")
        self.config = config
        self.policy = policy or NoStopping()
        self.loss_terms = list(loss_terms or [])
        self.seed = request.seed
        self.progress = request.progress
        self.generator = torch.Generator().manual_seed(request.seed)
        c, h, w = teacher.input_size
        self.shape = (int(self.targets.shape[0]), c, h, w)
        self.sampler = JitterSampler.for_image(h, self.vit.patch_size[0], config.jitter, config.flip)
        mean, std = teacher.mean_std(self.device)
        # Valid pixel range in normalised space, shaped to broadcast over (B, K, C, ph, pw).
        self.lower = ((0 - mean) / std).reshape(1, 1, c, 1, 1)
        self.upper = ((1 - mean) / std).reshape(1, 1, c, 1, 1)
        self.costs = CostMeter(
            config.measure_costs, list(self.vit.parameters()), self.device, self._probe_loss, self._probe_forward
        )

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

    def _probe_loss(self, count: int, scoring: bool) -> torch.Tensor:
        """The loss of one un-augmented step with ``count`` active patches, on fresh zero inputs."""
        zeros, layout = self._first_patches(count)
        return self._loss(zeros.requires_grad_(True), layout, PatchJitter(), scoring)[0]

    def _probe_forward(self, count: int) -> Callable[[], object]:
        """A call running the forward (loss included) of one step with ``count`` active patches."""
        patches, layout = self._first_patches(count)
        return lambda: self._loss(patches, layout, PatchJitter(), False)

    # ------------------------------------------------------------------ loop
    def run(self) -> list[InversionResult]:
        """Optimise the batch; returns one result per emission (one for non-emitting policies)."""
        cfg = self.config
        state = self._start()
        decisions = set(self.policy.decision_iterations(cfg.iterations))
        losses = torch.zeros(cfg.iterations, device=self.device)
        active_tokens: list[int] = []
        emissions: list[tuple[torch.Tensor, torch.Tensor]] = []

        # Warm-up: untimed passes, so first-call allocation and kernel selection stay off the clock.
        self._warm_up(state.patches, state.layout)
        watch = start_timed_loop(self.device)
        bar = tqdm(range(cfg.iterations), desc="invert", disable=not self.progress, leave=False, mininterval=1.0)
        for t in bar:
            # Forward and backward on the active patches, under this iteration's jitter; the
            # decision iterations' forward also scores the patches if the policy asks for it.
            scoring = t in decisions and self.policy.needs_attention
            jitter = self.sampler.sample(self.generator)
            state.optimizer.zero_grad(set_to_none=True)
            loss, per_sample, scores = self._loss(state.patches, state.layout, jitter, scoring)
            loss.backward()
            # Best images: the loss just computed belongs to the patches before this step.
            if cfg.keep_best:
                state.record_best(per_sample)
            # Adam step, then back into the valid pixel range.
            state.optimizer.step()
            with torch.no_grad():
                state.patches.clamp_(self.lower, self.upper)
            # Records (on the device: no host synchronisation).
            losses[t] = loss.detach()
            active_tokens.append(state.layout.positions.shape[1])
            if self.on_iteration is not None:
                self.on_iteration(t, self._assemble(state.store, state.patches.detach(), state.layout), state.active)
            # Stop decision: the policy may emit an image and stop patches.
            if t in decisions:
                emissions.extend(self._decide(t, state, scores))
        watch.stop()
        bar.close()

        # The final emission, then the costs replayed off the clock.
        emissions.append((self._snapshot(state.store, state.output(cfg.keep_best), state.layout), state.active.clone()))
        stats = self._stats(watch.elapsed, active_tokens, losses, sorted(decisions))
        return [self._result(images, mask, stats) for images, mask in emissions]

    def _start(self) -> _Trajectory:
        """Images drawn from N(0, 1) in normalised space, every patch active."""
        cfg, device = self.config, self.device
        init = torch.randn(self.shape, generator=self.generator).to(device)
        store = self.vit.patchify(init).contiguous()
        active = torch.ones(self.shape[0], self.vit.num_patches, dtype=torch.bool, device=device)
        layout = ActiveLayout.of(mask_to_positions(active), self.vit.grid_size)
        patches = store.clone().requires_grad_(True)
        optimizer = torch.optim.Adam([patches], lr=cfg.lr, betas=cfg.betas, fused=device.type in ("cpu", "cuda"))
        best_loss = torch.full((self.shape[0],), float("inf"), device=device)
        return _Trajectory(store, patches, optimizer, active, layout, patches.detach().clone(), best_loss)

    def _decide(
        self, t: int, state: _Trajectory, scores: torch.Tensor | None
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Ask the policy at decision iteration ``t``; apply its stops; return its emission, if any."""
        step = self.policy.decide(t, state.active, scores, self.generator)
        emitted = []
        if step.emit is not None:
            emitted.append(
                (self._snapshot(state.store, state.output(self.config.keep_best), state.layout), step.emit.clone())
            )
        if not torch.equal(step.active, state.active):
            check_step(state.active, step)
            state.narrow(step.active, self.vit.grid_size)
            self.costs.end_phase()
        return emitted

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
        self, wall: float, active_tokens: list[int], losses: torch.Tensor, decisions: list[int]
    ) -> InversionStats:
        """The run's costs (:meth:`CostMeter.stats`)."""
        shape = (self.config.iterations, self.shape[0], self.vit.num_patches)
        return self.costs.stats(wall, shape, active_tokens, losses, decisions, self.policy.needs_attention)
