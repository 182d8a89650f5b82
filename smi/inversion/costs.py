"""Cost measurement: FLOPs, saved-activation memory and wall time, and the loop's cost replay.

Protocol (see the design notes): wall time around the whole loop after a warm-up (CUDA
synchronised at both ends); FLOPs are forward + backward, counted with PyTorch's
``FlopCounterMode`` from the real token counts, attention included. ``FlopCounterMode`` has
no formula for the CPU fused attention kernel (``_scaled_dot_product_flash_attention_for_cpu``
and its backward), so this module registers torch's own SDPA formulas for them. Memory on CUDA
is the peak allocated; on CPU it is the bytes autograd saves for backward (activations only,
model parameters excluded), which is the device-independent part of the footprint.

:class:`CostMeter` replays one forward+backward step per distinct active token count after the
timed loop, so the counters never slow the loop down (a step's cost depends on its token count
only), and tracks the CUDA peak per phase (before and after the last stop).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch.utils import flop_counter
from torch.utils.flop_counter import FlopCounterMode

from smi.inversion.types import InversionStats

_aten = torch.ops.aten


def _register_cpu_attention_formulas() -> None:
    """Give FlopCounterMode formulas for the CPU fused attention forward and backward."""
    registry = flop_counter.flop_registry
    forward = getattr(_aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    backward = getattr(_aten, "_scaled_dot_product_flash_attention_for_cpu_backward", None)
    if forward is not None and forward not in registry:

        @flop_counter.register_flop_formula(forward)
        def _cpu_sdpa_flop(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
            return flop_counter.sdpa_flop_count(query_shape, key_shape, value_shape)

    if backward is not None and backward not in registry:

        @flop_counter.register_flop_formula(backward)
        def _cpu_sdpa_backward_flop(
            grad_out_shape, query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs
        ) -> int:
            return flop_counter.sdpa_backward_flop_count(grad_out_shape, query_shape, key_shape, value_shape)


_register_cpu_attention_formulas()


def count_flops(fn: Callable[[], torch.Tensor]) -> int:
    """FLOPs of ``fn()`` followed by ``backward()`` on its (scalar) result.

    ``backward()`` is used rather than ``torch.autograd.grad``, which FlopCounterMode cannot
    trace.

    Args:
        fn: Runs a forward pass and returns a scalar loss.

    Returns:
        Total floating-point operations (a multiply-add counts as 2).
    """
    with FlopCounterMode(display=False) as counter:
        loss = fn()
        loss.backward()
    return int(counter.get_total_flops())


def count_forward_flops(fn: Callable[[], object]) -> int:
    """FLOPs of a forward pass only."""
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


@contextmanager
def saved_activation_bytes(exclude: list[torch.Tensor] | None = None) -> Iterator[dict[str, int]]:
    """Sum the bytes autograd saves for backward inside the block.

    Storages are counted once, however often they are saved; tensors that share storage with
    ``exclude`` (the model's parameters) are not activations and are skipped.

    Yields:
        A dict whose ``"bytes"`` entry holds the total after the block.
    """
    excluded = {t.untyped_storage().data_ptr() for t in (exclude or [])}
    seen: set[int] = set()
    result = {"bytes": 0}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        try:
            storage = tensor.untyped_storage()
            ptr = storage.data_ptr()
        except (RuntimeError, NotImplementedError):  # tensors without storage (e.g. sparse)
            return tensor
        if ptr not in excluded and ptr not in seen:
            seen.add(ptr)
            result["bytes"] += storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        yield result


def synchronize(device: torch.device) -> None:
    """Wait for queued kernels so that a clock reading covers them."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Stopwatch:
    """Accumulates wall time across start/stop pairs, synchronising CUDA at each edge."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.elapsed = 0.0
        self._started: float | None = None

    def start(self) -> None:
        synchronize(self.device)
        self._started = time.perf_counter()

    def stop(self) -> None:
        if self._started is None:
            return
        synchronize(self.device)
        self.elapsed += time.perf_counter() - self._started
        self._started = None


def start_timed_loop(device: torch.device) -> Stopwatch:
    """After the warm-up: reset the CUDA peak-memory counter and start the clock of a timed loop."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    watch = Stopwatch(device)
    watch.start()
    return watch


#: ``memory_kind`` of the two memory protocols.
CUDA_MEMORY = "cuda_peak_allocated"
CPU_MEMORY = "cpu_saved_activations"


class CostMeter:
    """FLOPs and memory of one inversion run, replayed per active token count after its timed loop.

    Args:
        enabled: Count FLOPs and saved bytes (``InversionConfig.measure_costs``).
        parameters: The model's parameters (not activations: excluded from saved bytes).
        device: The run's device (CUDA: peak allocated memory; CPU: saved activation bytes).
        step: ``step(count, scoring)`` runs one un-augmented forward on fresh zero inputs with
            ``count`` active patches per sample and returns the scalar loss.
        forward: ``forward(count)`` prepares such inputs and returns a call running the forward.
    """

    def __init__(
        self,
        enabled: bool,
        parameters: list[torch.Tensor],
        device: torch.device,
        step: Callable[[int, bool], torch.Tensor],
        forward: Callable[[int], Callable[[], object]],
    ) -> None:
        self.enabled = enabled
        self.parameters = parameters
        self.device = device
        self._step = step
        self._forward = forward
        self.flops: dict[tuple[int, bool], int] = {}
        self.saved: dict[int, int] = {}
        self.peak_before_last = 0

    def step_flops(self, count: int, scoring: bool = False) -> int:
        """FLOPs of one forward+backward step with ``count`` active patches per sample (cached).

        The first call per count also records the saved-activation bytes of a non-scoring step.
        """
        key = (count, scoring)
        if key not in self.flops:
            self.flops[key] = count_flops(lambda: self._step(count, scoring))
            if not scoring and count not in self.saved:
                with saved_activation_bytes(exclude=self.parameters) as saved:
                    loss = self._step(count, False)
                self.saved[count] = saved["bytes"]
                del loss
        return self.flops[key]

    def step_forward_flops(self, count: int) -> int:
        """FLOPs of the forward pass alone (loss included) with ``count`` active patches."""
        return count_forward_flops(self._forward(count))

    def end_phase(self) -> None:
        """The active set shrank: on CUDA, keep the peak so far and measure the next phase anew."""
        if self.device.type == "cuda":
            self.peak_before_last = max(self.peak_before_last, torch.cuda.max_memory_allocated(self.device))
            torch.cuda.reset_peak_memory_stats(self.device)

    def stats(
        self,
        wall: float,
        shape: tuple[int, int, int],
        active_tokens: list[int],
        losses: torch.Tensor,
        decisions: list[int],
        scoring: bool,
    ) -> InversionStats:
        """The run's costs: FLOPs summed over its iterations from one replayed step per token count.

        Args:
            wall: Wall time of the timed loop.
            shape: (iterations, batch size, patches of the grid).
            active_tokens: Active patches per sample in each iteration.
            losses: The loss of each iteration (on the device).
            decisions: The policy's decision iterations.
            scoring: Whether the decision iterations' forwards also scored the patches.
        """
        iterations, batch_size, n = shape
        scored = set(decisions) if scoring else set()
        flops_total = 0
        by_tokens: dict[int, int] = {}
        if self.enabled:
            by_tokens = {count: self.step_flops(count) for count in sorted(set(active_tokens))}
            flops_total = sum(self.step_flops(count, t in scored) for t, count in enumerate(active_tokens))
        if self.device.type == "cuda":
            last = torch.cuda.max_memory_allocated(self.device)
            peak, after, kind = max(self.peak_before_last, last), last, CUDA_MEMORY
        else:
            final_count = active_tokens[-1] if active_tokens else n
            peak = max(self.saved.values()) if self.saved else 0
            after = self.saved.get(final_count, 0)
            kind = CPU_MEMORY
        return InversionStats(
            wall_time_s=wall,
            iterations=iterations,
            batch_size=batch_size,
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
