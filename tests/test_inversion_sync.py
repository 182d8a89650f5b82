"""GPU readiness of the timed loop: no host-device synchronisation in ordinary iterations.

On a GPU every operation that needs a value on the host (``.item()``, ``int()``/``bool()`` of a
tensor, boolean-mask indexing, ``nonzero``, ``torch.equal``) stalls the queue. The loop may
do that only at stopping iterations. On the CPU the same operations are visible to a
``TorchDispatchMode``, which counts them per iteration here; where CUDA exists the loop also
runs under ``torch.cuda.set_sync_debug_mode("error")``.
"""

from __future__ import annotations

from collections import defaultdict

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from baselines.psaq import PatchSimilarityEntropy, PSAQParams
from smi.inversion import InversionConfig, InversionRequest, run_class
from smi.inversion.policies import AttentionStopping, NoStopping
from smi.inversion.schedule import StoppingSchedule

aten = torch.ops.aten

#: Operations whose result the host must wait for.
SYNCING = {
    aten._local_scalar_dense,  # .item(), int(t), float(t), bool(t)
    aten.is_nonzero,
    aten.nonzero,
    aten.nonzero_static,
    aten.masked_select,
    aten.masked_scatter,
    aten.equal,
    aten.unique_dim,
    aten._unique2,
    aten.unique_consecutive,
}
#: Indexing operations that sync when an index is a boolean mask.
INDEXING = {aten.index, aten.index_put, aten.index_put_, aten._index_put_impl_}


def _is_sync(func, args) -> bool:
    packet = func.overloadpacket
    if packet in SYNCING:
        return True
    if packet in INDEXING and len(args) > 1:
        return any(
            isinstance(i, torch.Tensor) and i.dtype in (torch.bool, torch.uint8) for i in args[1] if i is not None
        )
    return False


class SyncCounter(TorchDispatchMode):
    """Records host-synchronising operations under the current label."""

    def __init__(self) -> None:
        super().__init__()
        self.label = -1
        self.found: dict[int, list[str]] = defaultdict(list)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if _is_sync(func, args):
            self.found[self.label].append(str(func))
        return func(*args, **(kwargs or {}))


def _run_counting(teacher, config, policy, terms=None):
    """Run the loop; ops between the end of iteration t-1 and the end of t are filed under t."""
    counter = SyncCounter()

    def on_iteration(t, images, active):
        counter.label = t + 1

    request = InversionRequest(teacher, torch.arange(4), config, progress=False)
    run = run_class(config)(request, policy=policy, loss_terms=terms, on_iteration=on_iteration)
    with counter:
        run.run()
    return counter.found, run


CASES = {
    "dense": (None, None),
    "smi": (StoppingSchedule((3, 6), (0.3, 0.3)), None),
    "psaq-smi": (StoppingSchedule((3, 6), (0.3, 0.3)), "psaq"),
}


@pytest.mark.parametrize("protocol", ["suite", "official"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_ordinary_iterations_never_synchronise(tiny_teacher, protocol: str, case: str) -> None:
    schedule, term = CASES[case]
    policy = AttentionStopping(schedule) if schedule else NoStopping()
    terms = [PatchSimilarityEntropy(PSAQParams(), 0)] if term else None
    config = InversionConfig(iterations=9, batch_size=4, warmup_iterations=0, measure_costs=False, protocol=protocol)
    found, run = _run_counting(tiny_teacher, config, policy, terms)
    decisions = set(run.scoring_at) if protocol == "official" else set(policy.decision_iterations(9))
    # Iteration t's ops (t >= 1) include the decision after iteration t-1, which may read values.
    ordinary = [t for t in range(1, 9) if t - 1 not in decisions]
    assert len(ordinary) >= 6
    offenders = {t: found[t] for t in ordinary if found.get(t)}
    assert not offenders, f"host-synchronising ops in ordinary iterations: {offenders}"
    if schedule:  # the counter does see the decisions' reads (so it can fail)
        assert any(found.get(t + 1) for t in decisions)


def test_psaq_official_iterations_never_synchronise(tiny_teacher) -> None:
    from baselines import psaq_official

    config = InversionConfig(batch_size=4, warmup_iterations=0, measure_costs=False)
    run = psaq_official.OfficialPSAQRun(tiny_teacher, 4, config, (4, 4), (2, 4), 2, (20.0, 30.0), 0, "cpu", False)
    counter = SyncCounter()
    loss = run.loss

    def counted(*args):
        counter.label += 1  # one loss per iteration: ops up to the next loss belong to this one
        return loss(*args)

    run.loss = counted  # type: ignore[method-assign]
    with counter:
        run.run()
    assert counter.label == 7
    offenders = {t: ops for t, ops in counter.found.items() if 0 <= t < 7 and ops}
    assert not offenders, f"host-synchronising ops in PSAQ-ViT iterations: {offenders}"


def test_counter_sees_boolean_indexing_and_item() -> None:
    counter = SyncCounter()
    x, mask = torch.randn(4, 3), torch.tensor([True, False, True, False])
    with counter:
        x[mask] = 0.0
        float(x.sum())
        torch.where(mask.view(-1, 1), x, x)
    assert sorted(counter.found[-1]) == ["aten._local_scalar_dense.default", "aten.index_put_.default"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("protocol", ["suite", "official"])
def test_cuda_loop_runs_under_sync_debug_mode_error(tiny_teacher, protocol: str) -> None:
    config = InversionConfig(iterations=6, batch_size=4, warmup_iterations=0, measure_costs=False, protocol=protocol)
    policy = AttentionStopping(StoppingSchedule((3,), (0.3,)))
    decisions = {2, 3} if protocol == "official" else {3}
    state = {"t": -1}

    def on_iteration(t, images, active):
        # Stopping iterations may read values back; everything else runs under "error".
        # so do the statistics after the last iteration.
        torch.cuda.set_sync_debug_mode("default" if t in decisions or t == 5 else "error")
        state["t"] = t

    request = InversionRequest(tiny_teacher, torch.arange(4), config, device="cuda", progress=False)
    run = run_class(config)(request, policy=policy, on_iteration=on_iteration)
    try:
        run.run()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert state["t"] == 5
