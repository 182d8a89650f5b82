"""Data-free post-training quantization of timm ViTs (after PSAQ-ViT, Li et al., ECCV 2022).

Two protocols (``QuantConfig.protocol``): ``suite``, the suite's own quantizer, and
``official``, the official PSAQ-ViT / SMI quantizer reproduced exactly (docs/protocols.md).

Public API:

- :class:`QuantConfig`: bit-widths, range estimator, calibration size;
- :func:`quantize_vit`: a fake-quantized copy of a ViT (:class:`QuantViT`, token-subset forward;
  :class:`OfficialQuantViT` under the official protocol);
- :func:`calibrate`: fix activation ranges on an image set (sparse images on kept patches only);
- :func:`run_ptq`: quantize, calibrate and evaluate on the real test split;
- :func:`fake_quantize`, :func:`evaluate_logits`: the arithmetic and the shared accuracy metric.
"""

from smi.quant.accuracy import evaluate_logits
from smi.quant.calibrate import calibrate, select_images
from smi.quant.config import QuantConfig
from smi.quant.fake_quant import IntGrid, fake_quantize, quantize_weight_per_channel
from smi.quant.model import QuantViT, quantize_vit
from smi.quant.official import OfficialQuantViT
from smi.quant.ptq import run_ptq

__all__ = [
    "IntGrid",
    "OfficialQuantViT",
    "QuantConfig",
    "QuantViT",
    "calibrate",
    "evaluate_logits",
    "fake_quantize",
    "quantize_vit",
    "quantize_weight_per_channel",
    "run_ptq",
    "select_images",
]
