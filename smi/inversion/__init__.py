"""The inversion core: the loop every inverting method shares, and what it is made of.

- :mod:`~smi.inversion.config`: :class:`InversionConfig`, a run's budget and hyper-parameters.
- :mod:`~smi.inversion.types`: :class:`InversionRequest` in, :class:`InversionResult` and
  :class:`InversionStats` out, :class:`LossTerm` for extra losses.
- :mod:`~smi.inversion.entry`: :func:`invert`, the one entry point (keyword-only options).
- :mod:`~smi.inversion.loop`: :class:`InversionRun`, the ``suite`` loop on the active patches.
- :mod:`~smi.inversion.official`: the official SMI code's loop (``protocol: official``).
- :mod:`~smi.inversion.policies`, :mod:`~smi.inversion.schedule`: which patches stop, and when.
- :mod:`~smi.inversion.priors`, :mod:`~smi.inversion.jitter`: image priors; jitter and flip.
- :mod:`~smi.inversion.costs`: FLOP counter, saved-activation bytes, timing, :class:`CostMeter`.
"""

from smi.inversion.config import PRECISIONS, PROTOCOLS, InversionConfig
from smi.inversion.costs import CostMeter
from smi.inversion.entry import invert, run_class
from smi.inversion.loop import ActiveLayout, InversionRun, IterationHook, forward_precision, watch_terms
from smi.inversion.official import OfficialInversionRun
from smi.inversion.policies import AttentionStopping, NoStopping, PatchPolicy, PolicyStep, RandomStopping
from smi.inversion.schedule import StoppingSchedule
from smi.inversion.types import InversionRequest, InversionResult, InversionStats, LossTerm

__all__ = [
    "PRECISIONS",
    "PROTOCOLS",
    "ActiveLayout",
    "AttentionStopping",
    "CostMeter",
    "InversionConfig",
    "InversionRequest",
    "InversionResult",
    "InversionRun",
    "InversionStats",
    "IterationHook",
    "LossTerm",
    "NoStopping",
    "OfficialInversionRun",
    "PatchPolicy",
    "PolicyStep",
    "RandomStopping",
    "StoppingSchedule",
    "forward_precision",
    "invert",
    "run_class",
    "watch_terms",
]
