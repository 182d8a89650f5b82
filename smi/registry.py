"""Old path of :mod:`smi.methods.registry`, kept so that modules not yet updated still import."""

from smi.methods.registry import InversionMethod, InversionRequest, available_methods, create_method, method_class

__all__ = ["InversionMethod", "InversionRequest", "available_methods", "create_method", "method_class"]
