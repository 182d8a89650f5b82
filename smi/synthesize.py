"""Old path of :mod:`smi.methods.synthesize`, kept so that modules not yet updated still import."""

from smi.methods.synthesize import synthesize

__all__ = ["synthesize"]
