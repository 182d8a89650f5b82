"""Default report settings, in a module without heavy imports so the CLI help stays fast."""

from __future__ import annotations

# Fraction of the dense-inversion student's final top-1 that "epochs to reach" refers to.
DEFAULT_TARGET_FRACTION = 0.95
# Classes (columns) shown in the image grid.
DEFAULT_GRID_CLASSES = 6
