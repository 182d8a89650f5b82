"""Grids of inverted images per method next to real images of the same classes.

Follows the qualitative figures of Sparse Model Inversion (Hu et al., ICML 2024): each row is
one image set (real images first, then the methods in table order), each column one class,
and stopped patches show as the black squares the image-set files already hold.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")  # headless: the workflow runs on machines without a display

import numpy as np
from matplotlib.figure import Figure

from smi.errors import SMIError
from smi.imageset import ImageSet
from smi.report.defaults import DEFAULT_GRID_CLASSES
from smi.report.render import METHOD_LABELS
from smi.report.stats import method_sort_key

CELL_INCHES = 1.3
LABEL_INCHES = 1.6  # room for the row labels left of the first column
REAL = "real"


def _method(image_set: ImageSet) -> str:
    return str(image_set.metadata.get("method", "unknown"))


def _row_labels(sets: Sequence[ImageSet]) -> list[str]:
    """Method names (with the seed where one method has several sets) and the kept share."""
    counts = Counter(_method(s) for s in sets)
    labels = []
    for image_set in sets:
        method = _method(image_set)
        label = METHOD_LABELS.get(method, method)
        if counts[method] > 1:
            label += f" (seed {image_set.metadata.get('seed', '?')})"
        if method != REAL:
            label += f"\n{100 * (1 - image_set.sparsity):.0f}% patches kept"
        labels.append(label)
    return labels


def choose_classes(sets: Sequence[ImageSet], num_classes: int = DEFAULT_GRID_CLASSES) -> list[int]:
    """The ``num_classes`` classes present in the most sets (ties: lowest label first)."""
    presence = Counter(c for s in sets for c in set(s.targets.tolist()))
    ranked = sorted(presence, key=lambda c: (-presence[c], c))
    return sorted(ranked[:num_classes])


def _to_display(image: np.ndarray) -> np.ndarray:
    """(C, H, W) in [0, 1] -> what ``imshow`` takes: (H, W) for one channel, (H, W, 3) for RGB."""
    image = np.clip(image, 0.0, 1.0)
    return image[0] if image.shape[0] == 1 else np.transpose(image, (1, 2, 0))


def image_grid_figure(
    sets: Sequence[ImageSet], num_classes: int = DEFAULT_GRID_CLASSES, class_names: Sequence[str] | None = None
) -> Figure:
    """One row per image set (real first, then methods in table order), one column per class.

    Args:
        sets: Image sets, e.g. one per method plus one made by the ``real`` method.
        num_classes: How many classes to show (those present in the most sets).
        class_names: Optional names indexed by label; otherwise ``metadata['class_names']``
            of a set, else ``class <k>``.

    Returns:
        The figure; a cell is empty where a set has no image of that class.
    """
    if not sets:
        raise SMIError("no image sets given for the grid; pass --image-sets with at least one file.")
    if num_classes < 1:
        raise SMIError(f"the grid needs at least one class column, got {num_classes}.")
    sets = sorted(sets, key=lambda s: (method_sort_key(_method(s)), str(s.metadata.get("seed", ""))))
    classes = choose_classes(sets, num_classes)
    names = class_names or next((s.metadata["class_names"] for s in sets if s.metadata.get("class_names")), None)
    rows, cols = len(sets), len(classes)
    fig = Figure(figsize=(LABEL_INCHES + CELL_INCHES * cols, 0.6 + CELL_INCHES * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    for r, (image_set, label) in enumerate(zip(sets, _row_labels(sets))):
        targets = image_set.targets.numpy()
        for c, cls in enumerate(classes):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            hits = np.flatnonzero(targets == cls)
            if hits.size:  # the first image of the class: deterministic across reruns
                ax.imshow(
                    _to_display(image_set.images[hits[0]].numpy()),
                    cmap="gray",
                    vmin=0.0,
                    vmax=1.0,
                    interpolation="nearest",
                )
            else:
                ax.text(0.5, 0.5, "none", ha="center", va="center", fontsize="small", color="grey")
            if r == 0:
                ax.set_title(
                    str(names[cls]) if names is not None and cls < len(names) else f"class {cls}", fontsize="small"
                )
            if c == 0:
                ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize="small")
    fig.suptitle("Inverted images per method (stopped patches black) and real images of the same classes")
    return fig


def load_image_sets(paths: Sequence[str | os.PathLike[str]]) -> list[ImageSet]:
    """Load image-set files (clear :class:`SMIError` for a missing or malformed one)."""
    return [ImageSet.load(p) for p in paths]
