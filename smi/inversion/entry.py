"""The one entry point of the shared inversion loop: :func:`invert`.

Every inverting method (``smi.methods.core``, ``baselines``) and the benchmark (``smi.bench``)
run the loop through it: a request (teacher, targets, budget, seed, device) plus keyword-only
options, and the loop of the request's ``config.protocol``.
"""

from __future__ import annotations

from smi.inversion.config import InversionConfig
from smi.inversion.loop import InversionRun, IterationHook
from smi.inversion.official import OfficialInversionRun
from smi.inversion.policies import PatchPolicy
from smi.inversion.types import InversionRequest, InversionResult, LossTerm


def run_class(config: InversionConfig) -> type[InversionRun]:
    """The loop class of ``config.protocol``: ``suite`` or ``official``."""
    return OfficialInversionRun if config.protocol == "official" else InversionRun


def invert(
    request: InversionRequest,
    *,
    policy: PatchPolicy | None = None,
    loss_terms: list[LossTerm] | None = None,
    on_iteration: IterationHook | None = None,
) -> list[InversionResult]:
    """Run the shared loop on one batch under ``request.config.protocol``.

    Args:
        request: The batch (teacher, targets, budget, seed, device, progress bar).
        policy: Which patches stay active; ``None`` stops none (dense inversion).
        loss_terms: Extra per-sample losses added to cross entropy and the priors.
        on_iteration: Called after every step with the iteration, the whole normalised images
            and the active mask (for tests and visualisation).

    Returns:
        One result per emission: one, unless the policy emits images during the run (PRI).
    """
    run = run_class(request.config)(request, policy=policy, loss_terms=loss_terms, on_iteration=on_iteration)
    return run.run()
