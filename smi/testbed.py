"""Testbed properties of a teacher: how far its activations have outlier channels.

Post-training quantization of ViTs is hard because a few channels of the activations entering
the linear layers carry ranges far larger than the rest (Bondarenko et al., 2021; Lin et al.,
FQ-ViT, 2022): a per-tensor range fitted to the outlier channel leaves the other channels a
handful of levels, and a calibration set that misses the outliers clips them. Whether the
calibration data matter therefore depends on whether the teacher has such outliers. This
module measures it:

- :func:`channel_ranges`: per-channel ``max - min`` of an activation over every other axis;
- :func:`outlier_ratio`: the largest channel range over the median channel range;
- :class:`LinearActivationRanges`: forward hooks on the input and the output of every linear
  layer of the transformer blocks (``qkv``, ``proj``, ``fc1``, ``fc2``) - exactly where
  :mod:`smi.quant` puts the input and output quantizers of its ``QuantLinear`` - collecting the
  running per-channel minimum and maximum over the images fed through the teacher.

The teacher is run unquantized on dense images; the hooks only read activations.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from smi.errors import SMIError

#: Activation positions hooked on each linear layer of a block.
POSITIONS: tuple[str, ...] = ("input", "output")


def channel_ranges(activation: torch.Tensor) -> torch.Tensor:
    """Per-channel range ``max - min`` of an activation whose last axis is the channel.

    Args:
        activation: Float tensor (..., C), e.g. (B, tokens, C).

    Returns:
        Float (C,) ranges.
    """
    if activation.dim() < 1 or activation.shape[-1] < 1:
        raise SMIError(f"an activation needs a channel axis; got shape {tuple(activation.shape)}.")
    flat = activation.detach().reshape(-1, activation.shape[-1]).float()
    return flat.amax(dim=0) - flat.amin(dim=0)


def outlier_ratio(ranges: torch.Tensor) -> float:
    """Largest channel range over the median channel range.

    1 means every channel spans the same range; a ratio of 20 means one channel needs 20 times
    the range of a typical one, so a shared per-tensor grid gives the typical channel about
    1/20 of the levels. The median is the lower median for an even channel count
    (:func:`torch.median`).

    Args:
        ranges: Float (C,) non-negative channel ranges.

    Returns:
        The ratio (``inf`` when the median range is zero but some channel varies, ``nan`` when
        no channel varies).
    """
    if ranges.dim() != 1 or ranges.numel() < 1:
        raise SMIError(f"channel ranges must be a non-empty vector; got shape {tuple(ranges.shape)}.")
    if bool((ranges < 0).any()):
        raise SMIError("channel ranges must be non-negative.")
    largest, median = float(ranges.max()), float(ranges.median())
    if median == 0.0:
        return float("nan") if largest == 0.0 else float("inf")
    return largest / median


@dataclass
class _Running:
    low: torch.Tensor | None = None
    high: torch.Tensor | None = None

    def update(self, activation: torch.Tensor) -> None:
        flat = activation.detach().reshape(-1, activation.shape[-1]).float()
        low, high = flat.amin(dim=0), flat.amax(dim=0)
        self.low = low if self.low is None else torch.minimum(self.low, low)
        self.high = high if self.high is None else torch.maximum(self.high, high)

    def ranges(self) -> torch.Tensor:
        assert self.low is not None and self.high is not None
        return self.high - self.low


class LinearActivationRanges:
    """Running per-channel ranges at the input and output of every linear layer in ``blocks``.

    Use as a context manager around the forwards to measure; the hooks are removed on exit.

    Args:
        model: A timm ViT (a ``blocks`` sequence of transformer blocks).
    """

    def __init__(self, model: nn.Module) -> None:
        blocks = getattr(model, "blocks", None)
        if blocks is None:
            raise SMIError(f"{type(model).__name__} has no 'blocks'; the outlier ratio needs a timm ViT.")
        self._linears = [(f"blocks.{name}", m) for name, m in blocks.named_modules() if isinstance(m, nn.Linear)]
        if not self._linears:
            raise SMIError("the model's blocks hold no linear layer to measure.")
        self._running = {(name, pos): _Running() for name, _ in self._linears for pos in POSITIONS}
        self._handles: list[Any] = []

    def __enter__(self) -> LinearActivationRanges:
        for name, module in self._linears:
            self._handles.append(module.register_forward_hook(self._hook(name)))
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def _hook(self, name: str) -> Any:
        def hook(_module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
            self._running[(name, "input")].update(inputs[0])
            self._running[(name, "output")].update(output)

        return hook

    def ratios(self) -> list[dict[str, Any]]:
        """One ``{"layer", "position", "outlier_ratio", "channels"}`` per measured activation."""
        out = []
        for (name, pos), running in self._running.items():
            if running.low is None:
                raise SMIError(f"no activation reached {name}; run at least one forward inside the context.")
            ranges = running.ranges()
            out.append(
                {
                    "layer": name,
                    "position": pos,
                    "outlier_ratio": outlier_ratio(ranges),
                    "channels": int(ranges.numel()),
                }
            )
        return out


def summarise(ratios: Iterable[float]) -> dict[str, float]:
    """Median and maximum of the per-activation ratios (what the testbed table prints)."""
    values = torch.tensor(list(ratios), dtype=torch.float64)
    if values.numel() == 0:
        raise SMIError("no outlier ratios to summarise.")
    return {"median": float(values.median()), "max": float(values.max())}


@torch.no_grad()
def measure_outliers(
    model: nn.Module, images: torch.Tensor, batch_size: int, device: torch.device | str
) -> dict[str, Any]:
    """Outlier ratios of ``model``'s block linears on normalised dense ``images``.

    Returns:
        ``per_activation`` (see :meth:`LinearActivationRanges.ratios`), ``median`` and ``max``
        over them, and ``num_images``.
    """
    if images.shape[0] < 1:
        raise SMIError("the outlier ratio needs at least one image.")
    model.eval()
    with LinearActivationRanges(model) as recorder:
        for start in range(0, images.shape[0], batch_size):
            model(images[start : start + batch_size].to(device))
    per = recorder.ratios()
    return {"per_activation": per, **summarise(r["outlier_ratio"] for r in per), "num_images": int(images.shape[0])}
