"""SMI benchmark suite: sparse model inversion of timm Vision Transformers.

The package holds the library behind the Snakemake workflow: the token-subset ViT forward
(:mod:`smi.sparse_vit`), the inversion loop (:mod:`smi.inversion`), patch stopping policies
(:mod:`smi.inversion.policies`), cost measurement (:mod:`smi.inversion.costs`), the method registry
(:mod:`smi.methods.registry`), datasets, teachers, evaluators, aggregation and the ``smi`` CLI.
"""

from smi.errors import SMIError

__version__ = "0.1.0"

__all__ = ["SMIError", "__version__"]
