"""``shapes``: a procedural dataset of foreground objects on textured backgrounds.

Each image holds one object - five shapes (disk, square, triangle, cross, ring) in two colour
families (warm, cool), ten classes - at a random position, scale and rotation on one of ten
background textures (stripes at four angles, checkers, dots, rings, grid, blobs, speckle) in
muted random colours, plus pixel noise. The ground-truth foreground mask comes with every
image, so one can measure whether Sparse Model Inversion's (Hu et al., ICML 2024) CLS-attention
scoring keeps the object, and whether inversion picks up background cues.

Spurious correlation: in ``train`` (and ``test_correlated``) the texture equals the class's own
texture with probability ``rho`` and is uniform over all ten otherwise; ``test`` always draws
it uniformly, independent of the class. Every split has its own random stream derived from
``seed``, so the test split does not change with ``num_train``, and ``rho`` changes only the
textures, not the objects.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from smi.data.tensors import TensorImageDataset
from smi.data.transforms import check_data_config, normalise, resize_images, resize_masks
from smi.errors import SMIError

SHAPES: tuple[str, ...] = ("disk", "square", "triangle", "cross", "ring")
COLOURS: tuple[str, ...] = ("warm", "cool")
TEXTURES: tuple[str, ...] = (
    "horizontal stripes",
    "vertical stripes",
    "diagonal stripes",
    "antidiagonal stripes",
    "checkers",
    "dots",
    "rings",
    "grid",
    "blobs",
    "speckle",
)
#: Class ``k`` is shape ``k // 2`` in colour family ``k % 2``.
CLASS_NAMES: tuple[str, ...] = tuple(f"{c} {s}" for s in SHAPES for c in COLOURS)
NUM_CLASSES = len(CLASS_NAMES)
SPLITS: tuple[str, ...] = ("train", "test", "test_correlated")
_SPLIT_STREAM = {"train": 1, "test": 2, "test_correlated": 3}
_CHUNK = 256  # images generated at once: bounds memory at large generation sizes
# Geometry of the shapes in units of the object radius (a disk has radius 1).
_SQUARE_HALF = 0.8
_TRIANGLE_SCALE = 1.2
_CROSS_HALF_WIDTH = 0.3
_RING_INNER = 0.55
# Texture frequencies in cycles per image side; background colours are muted towards grey so
# that the object's colour family stays visible.
_FREQ_RANGE = (2.5, 6.0)
_BG_LEVEL_RANGE = (0.2, 0.8)
_BG_SATURATION = 0.5
_BG_CONTRAST = 0.5  # the second texture colour lies this far from the first towards a random one
_BLOB_GRID = 4
_SHADING = 0.15


@dataclass(frozen=True)
class ShapesOptions:
    """Options of the ``shapes`` dataset.

    Attributes:
        num_train: Images in ``train``.
        num_test: Images in ``test`` and in ``test_correlated``.
        rho: Probability that a training background is its class's own texture (0 = none).
        seed: Seed of the generator; every split derives its own stream from it.
        image_size: Side of generation in pixels; ``None`` generates at the data config's size.
        min_scale: Smallest object radius as a fraction of the image side.
        max_scale: Largest object radius as a fraction of the image side.
        noise_std: Standard deviation of the pixel noise (pixels in [0, 1]).
    """

    num_train: int = 5000
    num_test: int = 1000
    rho: float = 0.0
    seed: int = 0
    image_size: int | None = None
    min_scale: float = 0.25
    max_scale: float = 0.4
    noise_std: float = 0.03

    def __post_init__(self) -> None:
        if min(self.num_train, self.num_test) < 1:
            raise SMIError("shapes num_train and num_test must be at least 1.")
        if not 0.0 <= float(self.rho) <= 1.0:
            raise SMIError(f"shapes rho {self.rho} must lie in [0, 1].")
        if not 0.0 < self.min_scale <= self.max_scale < 0.5:
            raise SMIError("shapes needs 0 < min_scale <= max_scale < 0.5 (radius as a fraction of the side).")
        if self.image_size is not None and self.image_size < 8:
            raise SMIError(f"shapes image_size {self.image_size} is too small; use at least 8 pixels.")


def load_shapes_split(
    options: ShapesOptions, split: str, data_config: Mapping[str, Any], with_masks: bool = False
) -> TensorImageDataset:
    """Generate the ``split`` and resize/normalise it per ``data_config``."""
    _, h, w = check_data_config(data_config)
    size = options.image_size or max(h, w)
    count = options.num_train if split == "train" else options.num_test
    rho = 0.0 if split == "test" else options.rho
    pixels, labels, masks, _ = generate(count, size, rho, options, _SPLIT_STREAM[split])
    images = normalise(resize_images(pixels, data_config), data_config)
    return TensorImageDataset(images, labels, resize_masks(masks, (h, w)), with_masks=with_masks)


def generate(
    count: int, size: int, rho: float, options: ShapesOptions, stream: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Generate ``count`` images of side ``size``.

    Returns:
        Pixels (N, 3, S, S) in [0, 1], labels (N,), foreground masks (N, S, S) bool, and the
        background texture index of each image (N,).
    """
    gen = torch.Generator().manual_seed(options.seed * 1000 + stream)
    # Balanced classes in random order.
    labels = torch.arange(count) % NUM_CLASSES
    labels = labels[torch.randperm(count, generator=gen)]
    agree = torch.rand(count, generator=gen) < rho
    textures = torch.where(agree, labels, torch.randint(NUM_CLASSES, (count,), generator=gen))
    pixels, masks = [], []
    for start in range(0, count, _CHUNK):
        stop = min(start + _CHUNK, count)
        p, m = _render(labels[start:stop], textures[start:stop], size, options, gen)
        pixels.append(p)
        masks.append(m)
    return torch.cat(pixels), labels, torch.cat(masks), textures


def _render(
    labels: torch.Tensor, textures: torch.Tensor, size: int, options: ShapesOptions, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    n = labels.shape[0]
    coords = (torch.arange(size, dtype=torch.float32) + 0.5) / size
    y, x = coords.view(1, size, 1), coords.view(1, 1, size)
    background = _background(textures, x, y, n, size, gen)
    mask, obj = _object(labels, x, y, n, options, gen)
    image = torch.where(mask[:, None], obj, background)
    image = image + options.noise_std * torch.randn(image.shape, generator=gen)
    return image.clamp(0.0, 1.0), mask


def _uniform(n: int, low: float, high: float, gen: torch.Generator) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, 1, 1, generator=gen)


def _background(
    textures: torch.Tensor, x: torch.Tensor, y: torch.Tensor, n: int, size: int, gen: torch.Generator
) -> torch.Tensor:
    """Texture maps in [0, 1] blended between two muted colours, (n, 3, S, S)."""
    freq = _uniform(n, *_FREQ_RANGE, gen) * 2 * math.pi
    phase = _uniform(n, 0.0, 2 * math.pi, gen)
    cx, cy = _uniform(n, 0.0, 1.0, gen), _uniform(n, 0.0, 1.0, gen)

    def wave(t: torch.Tensor) -> torch.Tensor:
        return 0.5 + 0.5 * torch.sin(freq * t + phase)

    blobs = torch.rand(n, 1, _BLOB_GRID, _BLOB_GRID, generator=gen)
    blobs = F.interpolate(blobs, size=(size, size), mode="bicubic", align_corners=False)[:, 0].clamp(0, 1)
    cell_x, cell_y = (freq * x / (2 * math.pi) + phase) % 1.0, (freq * y / (2 * math.pi) + phase) % 1.0
    maps = torch.stack(
        [
            wave(y).expand(n, size, size),
            wave(x).expand(n, size, size),
            wave((x + y) / math.sqrt(2)),
            wave((x - y) / math.sqrt(2)),
            ((torch.sin(freq * x / 2 + phase) * torch.sin(freq * y / 2 + phase)) > 0).float(),
            ((torch.cos(freq * x + phase) + torch.cos(freq * y + phase)) > 1.0).float(),
            wave(torch.sqrt((x - cx) ** 2 + (y - cy) ** 2)),
            ((cell_x < 0.2) | (cell_y < 0.2)).float(),
            blobs,
            torch.rand(n, size, size, generator=gen),
        ],
        dim=1,
    )
    t = maps[torch.arange(n), textures][:, None]
    colours = []
    for _ in range(2):
        c = _BG_LEVEL_RANGE[0] + (_BG_LEVEL_RANGE[1] - _BG_LEVEL_RANGE[0]) * torch.rand(n, 3, generator=gen)
        grey = c.mean(dim=1, keepdim=True)
        colours.append((grey + _BG_SATURATION * (c - grey))[:, :, None, None])
    colours[1] = colours[0] + _BG_CONTRAST * (colours[1] - colours[0])
    return colours[0] + (colours[1] - colours[0]) * t


def _object(
    labels: torch.Tensor, x: torch.Tensor, y: torch.Tensor, n: int, options: ShapesOptions, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Foreground masks (n, S, S) and object colour maps (n, 3, S, S)."""
    radius = _uniform(n, options.min_scale, options.max_scale, gen)
    cx = radius + (1 - 2 * radius) * torch.rand(n, 1, 1, generator=gen)
    cy = radius + (1 - 2 * radius) * torch.rand(n, 1, 1, generator=gen)
    angle = _uniform(n, 0.0, 2 * math.pi, gen)
    cos, sin = torch.cos(angle), torch.sin(angle)
    u = ((x - cx) * cos + (y - cy) * sin) / radius
    v = (-(x - cx) * sin + (y - cy) * cos) / radius
    r = torch.sqrt(u**2 + v**2)
    tu, tv = u / _TRIANGLE_SCALE, v / _TRIANGLE_SCALE
    half = _CROSS_HALF_WIDTH
    masks = torch.stack(
        [
            r <= 1.0,
            torch.maximum(u.abs(), v.abs()) <= _SQUARE_HALF,
            (tv >= -0.5) & (math.sqrt(3) * tu + tv <= 1.0) & (-math.sqrt(3) * tu + tv <= 1.0),
            ((u.abs() <= half) & (v.abs() <= 1.0)) | ((v.abs() <= half) & (u.abs() <= 1.0)),
            (r <= 1.0) & (r >= _RING_INNER),
        ],
        dim=1,
    )
    mask = masks[torch.arange(n), labels // len(COLOURS)]
    # Warm: red with some green (red, orange, yellow); cool: blue with some green (blue, cyan).
    strong = 0.75 + 0.25 * torch.rand(n, generator=gen)
    middle = 0.7 * torch.rand(n, generator=gen)
    weak = 0.2 * torch.rand(n, generator=gen)
    warm = torch.stack([strong, middle * strong, weak * strong], dim=1)
    cool = torch.stack([weak * strong, middle * strong, strong], dim=1)
    colour = torch.where((labels % len(COLOURS) == 0)[:, None], warm, cool)[:, :, None, None]
    shading = 1.0 - _SHADING + _SHADING * v.clamp(-1, 1)[:, None]
    return mask, colour * shading
