"""Datasets: embedded digits/shapes and the folder layouts of ImageNet, Flowers-102, CUB, ImageFolder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.io import savemat

from smi.data import DATASETS, DatasetSpec, load_dataset, num_classes, splits, suite_data_config
from smi.data.shapes import NUM_CLASSES, ShapesOptions, generate
from smi.errors import SMIError
from tests.layouts import imagenet_wnids, jpeg as _jpeg, make_classfolders, make_cub, make_flowers

DC16 = suite_data_config(16)
IMAGENET_DC = {
    "input_size": (3, 24, 24),
    "mean": (0.485, 0.456, 0.406),
    "std": (0.229, 0.224, 0.225),
    "interpolation": "bicubic",
    "crop_pct": 0.875,
    "crop_mode": "center",
}


# ---------------------------------------------------------------- specs
def test_spec_rejects_unknown_keys_names_and_options() -> None:
    with pytest.raises(SMIError, match="unknown key"):
        DatasetSpec.from_config({"name": "digits", "rooot": "x"})
    with pytest.raises(SMIError, match="unknown dataset 'mnist'"):
        DatasetSpec.from_config({"name": "mnist"})
    with pytest.raises(SMIError, match="test_frac"):
        DatasetSpec.from_config({"name": "digits", "options": {"test_frac": 0.3}})
    with pytest.raises(SMIError, match="rho"):
        DatasetSpec.from_config({"name": "shapes", "options": {"rho": 1.5}})
    spec = DatasetSpec.from_config({"name": "shapes", "options": {"rho": 0.5}})
    assert DatasetSpec.from_config(spec.to_config()) == spec
    assert set(DATASETS) == {
        "digits",
        "shapes",
        "imagenet",
        "flowers102",
        "cub200",
        "imagefolder",
        "cifar10",
        "cifar100",
    }


def test_unknown_split_and_masks_on_digits() -> None:
    with pytest.raises(SMIError, match="no split 'val'"):
        load_dataset(DatasetSpec("digits"), "val", DC16)
    with pytest.raises(SMIError, match="foreground masks"):
        load_dataset(DatasetSpec("digits"), "test", DC16, with_masks=True)


# ---------------------------------------------------------------- digits
def test_digits_split_is_fixed_stratified_and_resized() -> None:
    spec = DatasetSpec("digits", options={"test_fraction": 0.2, "seed": 3})
    train, test = load_dataset(spec, "train", DC16), load_dataset(spec, "test", DC16)
    assert len(train) + len(test) == 1797 and len(test) == 360
    image, label = test[0]
    assert image.shape == (3, 16, 16) and image.dtype == torch.float32 and 0 <= int(label) < 10
    assert torch.equal(image[0], image[1]), "grayscale must be replicated to all channels"
    assert image.min() >= -1.0 and image.max() <= 1.0 and image.min() < -0.9, "0.5/0.5 normalisation maps to [-1, 1]"
    assert torch.bincount(test.labels, minlength=10).min() >= 35, "stratified split"
    again = load_dataset(spec, "test", suite_data_config(32))
    assert again.images.shape[-2:] == (32, 32) and torch.equal(again.labels, test.labels)
    other = load_dataset(DatasetSpec("digits", options={"seed": 4}), "test", DC16)
    assert not torch.equal(other.labels, test.labels)
    assert num_classes(spec) == 10


# ---------------------------------------------------------------- shapes
def test_shapes_is_deterministic_balanced_and_masked() -> None:
    spec = DatasetSpec("shapes", options={"num_train": 60, "num_test": 30, "seed": 1})
    a = load_dataset(spec, "train", DC16, with_masks=True)
    b = load_dataset(spec, "train", DC16, with_masks=True)
    assert torch.equal(a.images, b.images) and torch.equal(a.masks, b.masks)
    image, label, mask = a[0]
    assert image.shape == (3, 16, 16) and mask.shape == (16, 16) and mask.dtype == torch.bool
    assert 0.02 < a.masks.float().mean() < 0.6
    assert torch.bincount(a.labels, minlength=NUM_CLASSES).tolist() == [6] * NUM_CLASSES
    c = load_dataset(DatasetSpec("shapes", options={"num_train": 60, "num_test": 30, "seed": 2}), "train", DC16)
    assert not torch.equal(a.images, c.images)
    assert len(a[0]) == 3 and len(load_dataset(spec, "train", DC16)[0]) == 2


def test_shapes_test_split_does_not_depend_on_train_size() -> None:
    small = load_dataset(DatasetSpec("shapes", options={"num_train": 10, "num_test": 20}), "test", DC16)
    large = load_dataset(DatasetSpec("shapes", options={"num_train": 50, "num_test": 20}), "test", DC16)
    assert torch.equal(small.images, large.images)


def test_shapes_spurious_backgrounds_follow_rho() -> None:
    options = ShapesOptions(num_train=400, num_test=400, rho=1.0)
    _, labels, masks, textures = generate(400, 16, 1.0, options, stream=1)
    assert torch.equal(textures, labels), "rho=1: every training background is the class's texture"
    _, labels0, masks0, textures0 = generate(400, 16, 0.0, options, stream=1)
    assert torch.equal(masks, masks0) and torch.equal(labels, labels0), "rho changes textures only"
    agree = (textures0 == labels0).float().mean()
    assert 0.04 < agree < 0.2, f"independent backgrounds agree by chance (~0.1), got {agree:.3f}"
    spec = DatasetSpec("shapes", options={"num_train": 40, "num_test": 40, "rho": 1.0})
    corr = load_dataset(spec, "test_correlated", DC16)
    test = load_dataset(spec, "test", DC16)
    assert torch.equal(corr.labels, corr.labels) and not torch.equal(corr.images, test.images)


def test_shapes_generation_size_differs_from_input_size() -> None:
    spec = DatasetSpec("shapes", options={"num_train": 10, "num_test": 10, "image_size": 64})
    ds = load_dataset(spec, "test", DC16, with_masks=True)
    assert ds.images.shape == (10, 3, 16, 16) and ds.masks.shape == (10, 16, 16)


# ---------------------------------------------------------------- folders
def test_imagenet_layout_with_timm_transform(tmp_path: Path) -> None:
    root = make_classfolders(tmp_path / "inet", imagenet_wnids()[:3])
    spec = DatasetSpec("imagenet", root=str(root))
    assert num_classes(spec) == 1000, "ImageNet labels index the canonical 1000-class list"
    val = load_dataset(spec, "test", IMAGENET_DC)
    assert len(val) == 6 and sorted({label for _, label in val.samples}) == [0, 1, 2]
    image, label = val[0]
    assert image.shape == (3, 24, 24) and image.dtype == torch.float32 and label == 0
    assert image.min() < 0, "normalised with the ImageNet mean/std"
    sub = load_dataset(DatasetSpec("imagenet", root=str(root), options={"max_images": 4}), "train", IMAGENET_DC)
    assert len(sub) == 4


def test_imagenet_subset_keeps_the_canonical_labels(tmp_path: Path) -> None:
    # Three classes from the middle of the list: sorted folder indices would be 0, 1, 2 and a
    # 1000-class head would be scored against the wrong classes.
    wnids = imagenet_wnids()
    chosen = [wnids[7], wnids[500], wnids[999]]
    root = make_classfolders(tmp_path / "inet", chosen, per=1)
    spec = DatasetSpec("imagenet", root=str(root))
    assert num_classes(spec) == 1000
    for split in ("train", "test"):
        samples = load_dataset(spec, split, IMAGENET_DC).samples
        assert {Path(path).parent.name: label for path, label in samples} == {
            wnids[7]: 7,
            wnids[500]: 500,
            wnids[999]: 999,
        }


def test_imagenet_folders_that_are_not_wnids_are_refused(tmp_path: Path) -> None:
    root = make_classfolders(tmp_path / "inet", ["cat", "dog", "n01440764"], per=1)
    with pytest.raises(SMIError, match=r"\['cat', 'dog'\].*not ILSVRC-2012 wnids.*imagefolder"):
        num_classes(DatasetSpec("imagenet", root=str(root)))


def test_imagefolder_accepts_test_or_val(tmp_path: Path) -> None:
    root = make_classfolders(tmp_path / "f", ["cat", "dog"], ("train", "test"), per=1)
    assert len(load_dataset(DatasetSpec("imagefolder", root=str(root)), "test", DC16)) == 2


def test_flowers_layout_and_env_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = make_flowers(tmp_path / "flowers")
    monkeypatch.setenv("SMI_FLOWERS_ROOT", str(root))
    spec = DatasetSpec("flowers102")
    assert num_classes(spec) == 3
    train, test = load_dataset(spec, "train", DC16), load_dataset(spec, "test", DC16)
    assert len(train) == 4 and len(test) == 5
    assert [s[1] for s in test.samples] == [(i % 3) for i in range(4, 9)], "labels are 0-based, by image id"
    assert test[0][0].shape == (3, 16, 16)


def test_cub_layout(tmp_path: Path) -> None:
    spec = DatasetSpec("cub200", root=str(make_cub(tmp_path / "cub")))
    assert num_classes(spec) == 2
    train, test = load_dataset(spec, "train", DC16), load_dataset(spec, "test", DC16)
    assert [s[1] for s in train.samples] == [0, 1] and [s[1] for s in test.samples] == [0, 1, 1]
    assert test[2][0].shape == (3, 16, 16)


@pytest.mark.parametrize(
    ("name", "breaks", "message"),
    [
        ("flowers102", lambda r: (r / "setid.mat").unlink(), r"setid\.mat is missing.*trnid"),
        ("flowers102", lambda r: savemat(r / "imagelabels.mat", {"labelz": np.ones((1, 9))}), r"lacks the key.*labels"),
        ("flowers102", lambda r: (r / "jpg" / "image_00007.jpg").unlink(), r"image_00007\.jpg is missing"),
        ("cub200", lambda r: (r / "train_test_split.txt").unlink(), r"train_test_split\.txt is missing"),
        ("cub200", lambda r: (r / "images.txt").write_text("one two three\n"), r"images\.txt line 1"),
        ("imagenet", lambda r: __import__("shutil").rmtree(r / "val"), r"val is missing.*val/<wnid>"),
    ],
)
def test_bad_layouts_name_the_file_and_layout(tmp_path: Path, name: str, breaks, message: str) -> None:
    builders = {
        "flowers102": make_flowers,
        "cub200": make_cub,
        "imagenet": lambda r: make_classfolders(r, imagenet_wnids()[:2]),
    }
    root = builders[name](tmp_path / name)
    breaks(root)
    with pytest.raises(SMIError, match=message):
        load_dataset(DatasetSpec(name, root=str(root)), "test", DC16)


def test_missing_root_says_how_to_give_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SMI_CUB_ROOT", raising=False)
    with pytest.raises(SMIError, match="SMI_CUB_ROOT"):
        load_dataset(DatasetSpec("cub200"), "test", DC16)
    with pytest.raises(SMIError, match="does not exist"):
        load_dataset(DatasetSpec("imagefolder", root=str(tmp_path / "nope")), "test", DC16)
    (tmp_path / "flat").mkdir()
    _jpeg(tmp_path / "flat" / "a.jpg", 0)
    with pytest.raises(SMIError, match=r"train is missing.*train/<class>"):
        load_dataset(DatasetSpec("imagefolder", root=str(tmp_path / "flat")), "test", DC16)


def test_unreadable_image_is_a_clear_error(tmp_path: Path) -> None:
    root = make_classfolders(tmp_path / "f", ["a"], ("train", "test"), per=1)
    (root / "test" / "a" / "img_0.JPEG").write_bytes(b"not a jpeg")
    ds = load_dataset(DatasetSpec("imagefolder", root=str(root)), "test", DC16)
    with pytest.raises(SMIError, match="cannot read image"):
        ds[0]


def test_splits_listing() -> None:
    assert splits(DatasetSpec("shapes")) == ("train", "test", "test_correlated")
    assert splits(DatasetSpec("flowers102")) == ("train", "test")
