"""The official SMI code's inversion loop (``protocol: official``).

Reproduces what the official implementation of Sparse Model Inversion (Hu et al., ICML 2024;
``synthesis/smi.py`` of Egg-Hu/SMI) does, quirks included; each is listed in
docs/protocols.md with the suite's own choice (:mod:`smi.inversion`, ``protocol: suite``):

- The optimised variable is the whole image batch (B, C, H, W). Stopped patches leave the
  token sequence but stay in the image: the TV prior (and, through sub-patch jitter, the
  cross entropy) keeps reaching them and Adam keeps moving them.
- Loss: batch-mean cross entropy plus the batch-level priors of
  :func:`smi.inversion.priors.batch_priors` (TV: ``1e-4 * sum over 4 directions of ||D(X)||`` over the
  whole batch, on the un-jittered images).
- Jitter: a roll by whole pixels (up to ``int(side * jitter)``, 28 px at 224 px) and a flip;
  with stopped patches, every active token is re-assigned to the grid position its patch is
  displayed nearest to (:class:`smi.inversion.jitter.PixelJitter`). With all patches active the tokens
  are the jittered image's patches in grid order.
- Stopping at schedule iteration ``t``: the scores come from an un-jittered forward at
  ``t - 1`` (CLS attention of the last block, averaged over heads), and the forward at ``t``,
  already on the kept tokens, is un-jittered too. Kept counts truncate (``int(n * (1 - r))``).
- Output: the final iterate (the official "best image" shares storage with the parameter),
  and a keep mask re-derived after the run by a fresh dense forward *on the denormalised
  [0, 1] pixels* (the official code feeds them as if normalised), top-K by CLS attention with
  ``K = int((N + 1) * prod(1 - r))`` (47 for 196 patches and the paper schedule). Policies
  without official code (random stopping, PRI) keep their tracked selection.

Not reproduced (no effect on the mathematics): the Python ``random`` stream (draws come from
the run's seeded torch generator), the token order inside the sequence (the official code
orders kept tokens by attention; the suite by grid position; a ViT is permutation-equivariant,
so only float rounding differs), and the patch embedding of stopped patches (the official
code embeds every patch and gathers the kept tokens; the suite embeds only the kept ones).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from smi.errors import SMIError
from smi.inversion.costs import count_forward_flops, start_timed_loop
from smi.inversion.jitter import PixelJitter, PixelJitterSampler
from smi.inversion.loop import InversionRun, forward_precision, watch_terms
from smi.inversion.policies import check_step, keep_top
from smi.inversion.priors import batch_priors
from smi.inversion.types import InversionResult, InversionStats
from smi.sparse_vit import gather_patches, mask_to_positions


def official_denormalize(images: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """The official ``Normalizer(reverse=True)`` with ``keep_zero``: ``x * std + mean``, exact zeros stay 0."""
    pixels = images * std.view(1, -1, 1, 1) + mean.view(1, -1, 1, 1)
    return torch.where(images == 0, torch.zeros_like(pixels), pixels)


def official_scoring_iterations(decisions: tuple[int, ...] | list[int]) -> dict[int, int]:
    """Map the iteration whose forward scores the patches to the schedule iteration it serves.

    The official loop scores at ``t - 1`` for a stop at ``t``. It would crash on a stop at
    iteration 0 (no attention yet) and silently skip the first of two consecutive stops;
    both are clear errors here.

    Raises:
        SMIError: For a stop at iteration 0 or two consecutive stop iterations.
    """
    its = sorted(decisions)
    if its and its[0] < 1:
        raise SMIError(
            "protocol 'official' scores patches one iteration before each stop; a stop at iteration 0 is impossible."
        )
    if any(b == a + 1 for a, b in zip(its, its[1:])):
        raise SMIError(
            f"protocol 'official' cannot stop at consecutive iterations {its} (the official code skips the first); "
            "space the stops at least two iterations apart."
        )
    return {t - 1: t for t in its}


class OfficialInversionRun(InversionRun):
    """One inversion of a batch as the official SMI code runs it; call :meth:`run`."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        c, h, w = self.teacher.input_size
        self.policy = self.policy.official()
        self.pixel_sampler = PixelJitterSampler.official(h, w, self.config.jitter, self.config.flip)
        self.image_lower = self.lower.view(1, c, 1, 1)
        self.image_upper = self.upper.view(1, c, 1, 1)
        # The official code saves images denormalised with the teacher's mean and std (keep_zero).
        self.mean, self.std = self.teacher.mean_std(self.device)
        self.scoring_at = official_scoring_iterations(self.policy.decision_iterations(self.config.iterations))
        # Iterations whose forward is un-jittered: the scoring one and the first on the kept tokens.
        self.still = set(self.scoring_at) | set(self.scoring_at.values())

    # ------------------------------------------------------------------ one step
    def image_step(
        self, images: torch.Tensor, positions: torch.Tensor, jitter: PixelJitter | None, scoring: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Loss and (if scoring) CLS-attention scores (B, N) of one official forward.

        Args:
            images: The whole images (B, C, H, W), normalised.
            positions: (B, K) grid positions of the active patches, ascending.
            jitter: This iteration's pixel roll and flip, or ``None`` for an un-jittered forward.
            scoring: Also return the last block's CLS attention, scattered onto the grid.
        """
        shown, displayed = images, positions
        if jitter is not None:
            shown = jitter.apply(images)
            if positions.shape[1] < self.vit.num_patches:  # all active: the patches in grid order
                displayed = jitter.token_jitter(self.vit.patch_size).positions(positions, self.vit.grid_size)
        tokens = gather_patches(self.vit.patchify(shown), displayed)
        with watch_terms(self.loss_terms, self.vit), forward_precision(self.config, self.device):
            out = self.vit.forward_patches(tokens, displayed, scoring)
        loss = F.cross_entropy(out.logits.float(), self.targets) + batch_priors(images, self.config.priors)
        for term in self.loss_terms:
            loss = loss + term.loss().mean()
        scores = None
        if out.cls_attention is not None:
            scores = torch.full((images.shape[0], self.vit.num_patches), float("-inf"), device=images.device)
            scores.scatter_(1, positions, out.cls_attention.float())
        return loss, scores

    def _probe_loss(self, count: int, scoring: bool) -> torch.Tensor:
        images = torch.zeros(self.shape, device=self.device, requires_grad=True)
        positions = torch.arange(count, device=self.device).expand(self.shape[0], count)
        return self.image_step(images, positions, None, scoring)[0]

    def output_mask(self, pixels: torch.Tensor, active: torch.Tensor) -> torch.Tensor:
        """The official keep mask of the saved images (see the module docstring)."""
        keep = self.policy.official_output_keep(self.vit.num_patches)
        if keep is None:
            return active
        everything = torch.ones_like(active)
        if keep >= self.vit.num_patches:
            return everything
        with torch.no_grad():
            scores = self.vit(pixels, return_cls_attention=True).cls_attention
        return keep_top(everything, scores.float(), keep)

    # ------------------------------------------------------------------ loop
    def run(self) -> list[InversionResult]:
        """Optimise the whole images; returns one result per emission (one for non-emitting policies)."""
        # Start: whole images drawn from N(0, 1) in normalised space, every patch active.
        cfg, device = self.config, self.device
        images = torch.randn(self.shape, generator=self.generator).to(device).requires_grad_(True)
        optimizer = torch.optim.Adam([images], lr=cfg.lr, betas=cfg.betas, fused=device.type in ("cpu", "cuda"))
        active = torch.ones(self.shape[0], self.vit.num_patches, dtype=torch.bool, device=device)
        positions = mask_to_positions(active)
        losses = torch.zeros(cfg.iterations, device=device)
        active_tokens: list[int] = []
        emissions: list[tuple[torch.Tensor, torch.Tensor]] = []

        # Warm-up: untimed passes, so first-call allocation and kernel selection stay off the clock.
        self._warm_up_images(images, positions)
        watch = start_timed_loop(device)
        bar = tqdm(range(cfg.iterations), desc="invert", disable=not self.progress, leave=False, mininterval=1.0)
        for t in bar:
            # Forward and backward on the active tokens of the whole (pixel-jittered) images.
            jitter = None if t in self.still else self.pixel_sampler.sample(self.generator)
            scoring = t in self.scoring_at and self.policy.needs_attention
            optimizer.zero_grad(set_to_none=True)
            loss, scores = self.image_step(images, positions, jitter, scoring)
            loss.backward()
            # Adam step, then back into the valid pixel range.
            optimizer.step()
            with torch.no_grad():
                images.clamp_(self.image_lower, self.image_upper)
            # Records (on the device: no host synchronisation).
            losses[t] = loss.detach()
            active_tokens.append(positions.shape[1])
            if self.on_iteration is not None:
                self.on_iteration(t, images.detach(), active)
            # Stop decision on this forward's scores, effective from the next (the scheduled) iteration.
            if t in self.scoring_at:
                active, positions = self._decide_official(t, active, positions, scores, images, emissions)
        # The official output is part of the run: the final iterate and its re-derived mask.
        pixels = self._denormalized(images)
        mask = self.output_mask(pixels, active)
        watch.stop()
        bar.close()
        emissions.append((pixels, mask.clone()))
        # The costs replayed off the clock, plus the dense forward that re-derived the mask.
        stats = self._official_stats(watch.elapsed, active_tokens, losses)
        return [self._result(image.clamp(0, 1), keep, stats) for image, keep in emissions]

    def _denormalized(self, images: torch.Tensor) -> torch.Tensor:
        """The images as the official code saves them: :func:`official_denormalize` of the iterate."""
        return official_denormalize(images.detach(), self.mean, self.std)

    def _warm_up_images(self, images: torch.Tensor, positions: torch.Tensor) -> None:
        """Untimed un-jittered passes on a copy of the images (the optimised ones stay untouched)."""
        for _ in range(self.config.warmup_iterations):
            self.image_step(images.detach().clone().requires_grad_(True), positions, None, False)[0].backward()

    def _decide_official(
        self,
        t: int,
        active: torch.Tensor,
        positions: torch.Tensor,
        scores: torch.Tensor | None,
        images: torch.Tensor,
        emissions: list[tuple[torch.Tensor, torch.Tensor]],
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Ask the policy for the stop scheduled after scoring iteration ``t``; returns the new active set.

        An emitted image (denormalised, as the official code saves it) is appended to ``emissions``.
        """
        step = self.policy.decide(self.scoring_at[t], active, scores, self.generator)
        if step.emit is not None:
            emissions.append((self._denormalized(images), step.emit.clone()))
        if torch.equal(step.active, active):
            return active, positions
        check_step(active, step)
        positions = mask_to_positions(step.active)
        self.costs.end_phase()
        return step.active, positions

    def _official_stats(self, wall: float, active_tokens: list[int], losses: torch.Tensor) -> InversionStats:
        """The loop's replayed costs plus, where the mask is re-derived, its dense scoring forward."""
        stats = self._stats(wall, active_tokens, losses, sorted(self.scoring_at))
        n = self.vit.num_patches
        keep = self.policy.official_output_keep(n)
        if self.costs.enabled and keep is not None and keep < n:
            stats.flops_total += self._mask_forward_flops()
        return stats

    def _mask_forward_flops(self) -> int:
        """FLOPs of the dense scoring forward that re-derives the output mask."""
        zeros = torch.zeros(self.shape, device=self.device)
        return count_forward_flops(lambda: self.vit(zeros, return_cls_attention=True))
