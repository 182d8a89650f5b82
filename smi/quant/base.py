"""What every fake-quantized ViT of the suite offers besides its forward: calibrated ranges and
dense logits. The suite's (:mod:`smi.quant.model`) and the official (:mod:`smi.quant.official`)
quantized models differ in where they quantize, not in how their results are read."""

from __future__ import annotations

from collections.abc import Iterator

import torch

from smi.quant.modules import ActQuantizer
from smi.sparse_vit import TokenSubsetViT


class QuantizedViT(TokenSubsetViT):
    """Token-subset forward of a fake-quantized ViT; subclasses name their activation quantizers."""

    def act_quantizers(self) -> Iterator[tuple[str, ActQuantizer]]:
        """All activation quantizers with their module names."""
        raise NotImplementedError

    def activation_ranges(self) -> list[dict[str, float | str]]:
        """Calibrated range of every activation quantizer (after calibration is finalised).

        Returns:
            One ``{"quantizer": module name, "lo": ..., "hi": ...}`` per quantizer.
        """
        out: list[dict[str, float | str]] = []
        for name, quantizer in self.act_quantizers():
            lo, hi = quantizer.quantization_range()
            out.append({"quantizer": name, "lo": lo, "hi": hi})
        return out

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """Logits of normalised dense images (every patch kept)."""
        return self.forward(images).logits
