"""Equal inversion-compute comparisons for knowledge transfer.

Comparing students distilled from equally many images favours the costlier inversion method.
A fair speed-accuracy comparison gives each method the same inversion budget instead: a
method that spends fewer GFLOPs per image (SMI stops patches) gets proportionally more images.
The per-image cost is the ``gflops_per_image`` of the method's inversion metrics record.
"""

from __future__ import annotations

import math

from smi.errors import SMIError


def images_for_budget(budget_gflops: float, gflops_per_image: float, available: int) -> int:
    """Number of images a method can produce within ``budget_gflops``.

    Args:
        budget_gflops: The inversion compute granted to every method (total GFLOPs).
        gflops_per_image: The method's measured inversion cost per image.
        available: Images in the method's set.

    Returns:
        ``floor(budget / cost)``.

    Raises:
        SMIError: If an input is not positive, the budget buys no image, or the set holds fewer
            images than the budget buys (a smaller set would understate the method).
    """
    if not budget_gflops > 0 or not gflops_per_image > 0:
        raise SMIError(
            f"budget ({budget_gflops} GFLOPs) and cost per image ({gflops_per_image} GFLOPs) must be positive."
        )
    count = math.floor(budget_gflops / gflops_per_image * (1 + 1e-9))  # guard 3 * (1/3) -> 2.999...
    if count < 1:
        raise SMIError(
            f"a budget of {budget_gflops} GFLOPs buys no image at {gflops_per_image} GFLOPs per image; "
            "raise the budget."
        )
    if count > available:
        raise SMIError(
            f"the budget of {budget_gflops} GFLOPs buys {count} images at {gflops_per_image:.4g} GFLOPs each, but the "
            f"set holds only {available}; invert at least {count} images with this method or lower the budget."
        )
    return count
