"""The budget and hyper-parameters of one inversion run (:class:`InversionConfig`)."""

from __future__ import annotations

from dataclasses import dataclass

from smi.errors import SMIError
from smi.inversion.priors import PriorWeights

#: Inversion protocols (docs/protocols.md): the official code's behaviour, or the suite's own.
PROTOCOLS = ("suite", "official")
#: Numeric precisions of the teacher's forward pass; ``bf16`` runs it under ``torch.autocast``.
PRECISIONS = ("fp32", "bf16")


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
        protocol: ``suite`` (the loop of :mod:`smi.inversion.loop`) or ``official`` (the official
            SMI code's behaviour, quirks included: :mod:`smi.inversion.official`; docs/protocols.md).
        precision: ``fp32``, or ``bf16`` to run the teacher's forward (and so its backward)
            under ``torch.autocast`` with bfloat16, for GPUs; images, optimiser and losses stay
            fp32. FLOP counts do not change: they count operations, not their precision.
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
    protocol: str = "suite"
    precision: str = "fp32"

    def __post_init__(self) -> None:
        if self.iterations < 1:
            raise SMIError(f"iterations must be >= 1, got {self.iterations}")
        if self.batch_size < 1:
            raise SMIError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.lr <= 0:
            raise SMIError(f"lr must be > 0, got {self.lr}")
        if not 0.0 <= self.jitter < 1.0:
            raise SMIError(f"jitter must be a fraction of the image side in [0, 1), got {self.jitter}")
        if self.protocol not in PROTOCOLS:
            raise SMIError(f"inversion protocol must be one of {list(PROTOCOLS)}, got {self.protocol!r}.")
        if self.precision not in PRECISIONS:
            raise SMIError(f"inversion precision must be one of {list(PRECISIONS)}, got {self.precision!r}.")

    @property
    def priors(self) -> PriorWeights:
        """The prior weights as one object."""
        return PriorWeights(tv_l2=self.tv_l2, tv_l1=self.tv_l1, l2=self.l2)
