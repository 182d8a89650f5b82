"""Fixture datasets in the real on-disk layouts, generated with tiny random JPEGs.

Two kinds of builders:

- small ones for the dataset tests (:func:`make_classfolders`, :func:`make_flowers`,
  :func:`make_cub`): a handful of classes;
- full-size ones keyed by the dataset's ``name`` in :data:`BUILDERS`, for end-to-end runs:
  the dataset's real class count (ImageNet's 1000 ``train/<wnid>`` and ``val/<wnid>``
  folders in timm's label order, Flowers-102's 102 labels, CUB's 200 classes, CIFAR-10/100 in
  torchvision's layout), with images
  only in the classes a run needs. A new dataset gets a builder with the same signature
  (``root, train_classes, test_classes, per_class`` -> root) and an entry in both dicts.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image
from scipy.io import savemat

from tests.cifar_layout import write_cifar

#: Side of the generated JPEGs; the loaders resize them to the model's input.
TINY_SIDE = 8


def jpeg(path: Path, seed: int, size: tuple[int, int] = (40, 30)) -> None:
    """A random RGB JPEG of ``size`` (width, height) at ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)


# ---------------------------------------------------------------- small layouts for the dataset tests
def make_classfolders(
    root: Path, classes: list[str], splits_: tuple[str, ...] = ("train", "val"), per: int = 2
) -> Path:
    """``<split>/<class>/img_<i>.JPEG`` folders (ImageNet and ImageFolder layouts)."""
    for s, split in enumerate(splits_):
        for c, name in enumerate(classes):
            for i in range(per):
                jpeg(root / split / name / f"img_{i}.JPEG", seed=100 * s + 10 * c + i)
    return root


def make_flowers(root: Path, num_images: int = 9, classes: int = 3) -> Path:
    """Flowers-102 layout with ``num_images`` images: 1-3 train, 4 valid, 5-9 test."""
    for i in range(1, num_images + 1):
        jpeg(root / "jpg" / f"image_{i:05d}.jpg", seed=i)
    labels = np.array([[1 + (i % classes) for i in range(num_images)]])
    savemat(root / "imagelabels.mat", {"labels": labels})
    savemat(
        root / "setid.mat",
        {"trnid": np.array([[1, 2, 3]]), "valid": np.array([[4]]), "tstid": np.array([[5, 6, 7, 8, 9]])},
    )
    return root


def make_cub(root: Path) -> Path:
    """CUB-200-2011 layout with two classes and five images."""
    rows = [
        (1, "001.Albatross/a.jpg", 1, 1),
        (2, "001.Albatross/b.jpg", 1, 0),
        (3, "002.Auklet/c.jpg", 2, 1),
        (4, "002.Auklet/d.jpg", 2, 0),
        (5, "002.Auklet/e.jpg", 2, 0),
    ]
    _write_cub(root, rows)
    return root


# ---------------------------------------------------------------- full-size layouts, keyed by dataset name
def imagenet_wnids() -> list[str]:
    """The 1000 ILSVRC-2012 wnids in the label order of timm's ImageNet heads."""
    from timm.data import ImageNetInfo

    return list(ImageNetInfo().label_names())


def build_imagenet(root: Path, train_classes: Sequence[int], test_classes: Sequence[int], per_class: int = 1) -> Path:
    """All 1000 ``train/<wnid>`` and ``val/<wnid>`` folders; images only in the given classes."""
    wnids = imagenet_wnids()
    for split, wanted in (("train", set(train_classes)), ("val", set(test_classes))):
        for c, wnid in enumerate(wnids):
            folder = root / split / wnid
            folder.mkdir(parents=True, exist_ok=True)
            if c in wanted:
                for i in range(per_class):
                    jpeg(folder / f"{wnid}_{i}.JPEG", seed=_seed(split, c, i), size=(TINY_SIDE, TINY_SIDE))
    return root


def build_flowers102(root: Path, train_classes: Sequence[int], test_classes: Sequence[int], per_class: int = 1) -> Path:
    """``jpg/``, ``imagelabels.mat`` and ``setid.mat`` declaring all 102 classes.

    The last class always gets a test image, so that the label file declares 102 classes.
    """
    rows = _rows(train_classes, _with_last(test_classes, CLASS_COUNTS["flowers102"]), per_class)
    for number, (split, c, i) in enumerate(rows, start=1):
        jpeg(root / "jpg" / f"image_{number:05d}.jpg", seed=_seed(split, c, i), size=(TINY_SIDE, TINY_SIDE))
    labels = np.array([[c + 1 for _, c, _ in rows]])
    ids = {split: [n for n, (s, _, _) in enumerate(rows, start=1) if s == split] for split in ("train", "test")}
    # Flowers-102 splits its training images into trnid and valid; both belong to the train split.
    half = max(1, len(ids["train"]) // 2)
    savemat(root / "imagelabels.mat", {"labels": labels})
    savemat(
        root / "setid.mat",
        {
            "trnid": np.array([ids["train"][:half]]),
            "valid": np.array([ids["train"][half:]]),
            "tstid": np.array([ids["test"]]),
        },
    )
    return root


def build_cub200(root: Path, train_classes: Sequence[int], test_classes: Sequence[int], per_class: int = 1) -> Path:
    """``images/``, ``images.txt``, ``image_class_labels.txt``, ``train_test_split.txt`` (and
    ``classes.txt``) declaring all 200 classes; the last class always gets a test image."""
    rows = _rows(train_classes, _with_last(test_classes, CLASS_COUNTS["cub200"]), per_class)
    table = [
        (n, f"{c + 1:03d}.Class_{c + 1}/img_{n}.jpg", c + 1, int(split == "train"))
        for n, (split, c, _) in enumerate(rows, start=1)
    ]
    _write_cub(root, table)
    count = CLASS_COUNTS["cub200"]
    (root / "classes.txt").write_text("".join(f"{c} {c:03d}.Class_{c}\n" for c in range(1, count + 1)))
    return root


def build_cifar(name: str) -> Callable[..., Path]:
    """A builder of torchvision's CIFAR layout (every class gets images: the files hold all of them)."""

    def build(
        root: Path, train_classes: Sequence[int] = (), test_classes: Sequence[int] = (), per_class: int = 1
    ) -> Path:
        return write_cifar(root, name, train_per_class=per_class, test_per_class=per_class)

    return build


#: Builders of the full-size layouts, by dataset ``name``.
BUILDERS: dict[str, Callable[..., Path]] = {
    "imagenet": build_imagenet,
    "flowers102": build_flowers102,
    "cub200": build_cub200,
    "cifar10": build_cifar("cifar10"),
    "cifar100": build_cifar("cifar100"),
}
#: Class count of each full-size layout.
CLASS_COUNTS: dict[str, int] = {"imagenet": 1000, "flowers102": 102, "cub200": 200, "cifar10": 10, "cifar100": 100}


def _seed(split: str, c: int, i: int) -> int:
    return (0 if split == "train" else 1_000_000) + 100 * c + i


def _with_last(classes: Sequence[int], count: int) -> list[int]:
    return sorted(set(classes) | {count - 1})


def _rows(train: Sequence[int], test: Sequence[int], per_class: int) -> list[tuple[str, int, int]]:
    """(split, class, index) per image, train images first."""
    return [
        (split, c, i)
        for split, classes in (("train", sorted(set(train))), ("test", test))
        for c in classes
        for i in range(per_class)
    ]


def _write_cub(root: Path, rows: list[tuple[int, str, int, int]]) -> None:
    for i, rel, _, _ in rows:
        jpeg(root / "images" / rel, seed=i)
    (root / "images.txt").write_text("".join(f"{i} {rel}\n" for i, rel, _, _ in rows))
    (root / "image_class_labels.txt").write_text("".join(f"{i} {c}\n" for i, _, c, _ in rows))
    (root / "train_test_split.txt").write_text("".join(f"{i} {t}\n" for i, _, _, t in rows))
