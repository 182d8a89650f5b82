"""Cost measurement: FLOPs, saved-activation memory and wall time.

Protocol (see the design notes): FLOPs are forward + backward, counted with PyTorch's
``FlopCounterMode`` from the real token counts, attention included. ``FlopCounterMode`` has
no formula for the CPU fused attention kernel (``_scaled_dot_product_flash_attention_for_cpu``
and its backward), so this module registers torch's own SDPA formulas for them. Memory on CUDA
is the peak allocated; on CPU it is the bytes autograd saves for backward (activations only,
model parameters excluded), which is the device-independent part of the footprint.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Callable, Iterator

import torch
from torch.utils import flop_counter
from torch.utils.flop_counter import FlopCounterMode

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
        def _cpu_sdpa_backward_flop(grad_out_shape, query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
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


def vit_block_flops_analytic(tokens: int, dim: int, mlp_hidden: int, backward_input_only: bool = True) -> int:
    """Analytic FLOPs of one pre-norm ViT block for a single sample (matmuls only).

    Forward: qkv 6*T*D^2, attention scores and weighted sum 4*T^2*D, projection 2*T*D^2,
    MLP 4*T*D*H. Backward with frozen weights (inversion: only the input gradient) costs the
    same as the forward for every linear layer, and twice the forward plus a recomputation of
    the scores for the attention (the fused kernel's backward): 2*T^2*D + 8*T^2*D.

    Args:
        tokens: Sequence length T (prefix plus patch tokens).
        dim: Embedding width D.
        mlp_hidden: MLP hidden width H.
        backward_input_only: Include the input-gradient backward pass.

    Returns:
        FLOPs (multiply-add = 2).
    """
    linear = 2 * tokens * dim * (3 * dim + dim + 2 * mlp_hidden)
    attention = 4 * tokens * tokens * dim
    if not backward_input_only:
        return linear + attention
    attention_backward = 10 * tokens * tokens * dim
    return 2 * linear + attention + attention_backward
