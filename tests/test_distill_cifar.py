"""CIFAR-10/100 (the official knowledge-transfer datasets) from torchvision's on-disk layout."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
import torchvision
import torchvision.datasets.cifar as tv_cifar

from smi.data import DATASETS, ROOT_ENV_VARS, DatasetSpec, load_dataset, num_classes
from smi.data.cifar import read_split
from smi.data.transforms import eval_transform
from smi.errors import SMIError
from tests.cifar_layout import FOLDERS, write_cifar

# The official code's CIFAR-10 statistics and DeiT validation transform (resize 256 bicubic, crop 224),
# scaled down: 40 px resize (48 / 0.875 = 54.9 -> 54), 48 px crop.
DATA_CONFIG = {
    "input_size": (3, 48, 48),
    "mean": (0.4914, 0.4822, 0.4465),
    "std": (0.2023, 0.1994, 0.2010),
    "interpolation": "bicubic",
    "crop_pct": 0.875,
    "crop_mode": "center",
}
TORCHVISION = {"cifar10": torchvision.datasets.CIFAR10, "cifar100": torchvision.datasets.CIFAR100}


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_reads_what_torchvision_reads(name, tmp_path, monkeypatch) -> None:
    write_cifar(tmp_path, name, train_per_class=3, test_per_class=2)
    # torchvision checks the md5 of the published archives; the layout and format are what is compared here.
    monkeypatch.setattr(tv_cifar, "check_integrity", lambda *args, **kwargs: True)
    for split, train in (("train", True), ("test", False)):
        reference = TORCHVISION[name](str(tmp_path), train=train, download=False)
        pixels, labels = read_split(name, str(tmp_path), split)
        assert np.array_equal(reference.data, pixels) and reference.targets == labels.tolist()
    assert num_classes(DatasetSpec(name, str(tmp_path))) == {"cifar10": 10, "cifar100": 100}[name]
    assert name in DATASETS and name in ROOT_ENV_VARS


def test_items_go_through_the_teachers_eval_transform(tmp_path) -> None:
    from PIL import Image

    write_cifar(tmp_path, "cifar10")
    test = load_dataset(DatasetSpec("cifar10", str(tmp_path)), "test", DATA_CONFIG)
    assert len(test) == 10
    image, label = test[3]
    pixels, labels = read_split("cifar10", str(tmp_path), "test")
    assert label == int(labels[3]) and image.shape == (3, 48, 48)
    torch.testing.assert_close(image, eval_transform(DATA_CONFIG)(Image.fromarray(pixels[3])), rtol=0, atol=0)
    # The CIFAR folder itself is accepted as the root too.
    assert len(load_dataset(DatasetSpec("cifar10", str(tmp_path / FOLDERS["cifar10"])), "train", DATA_CONFIG)) == 20


def test_keep_zero_leaves_zero_pixels_at_zero(tmp_path) -> None:
    write_cifar(tmp_path, "cifar10")
    base = tmp_path / FOLDERS["cifar10"]
    with (base / "test_batch").open("rb") as f:
        batch = pickle.load(f)
    batch["data"][0, :] = 0  # a black image: 0 everywhere, also after resizing
    batch["data"][0, :1024] = 200  # ... except its red channel
    with (base / "test_batch").open("wb") as f:
        pickle.dump(batch, f, protocol=2)
    plain = load_dataset(DatasetSpec("cifar10", str(tmp_path)), "test", DATA_CONFIG)[0][0]
    kept = load_dataset(DatasetSpec("cifar10", str(tmp_path), {"keep_zero": True}), "test", DATA_CONFIG)[0][0]
    assert bool((kept[1:] == 0).all()), "zero pixels must stay 0 after normalisation"
    assert bool((plain[1] < -2).all()), "without keep_zero a 0 pixel maps to -mean/std"
    torch.testing.assert_close(kept[0], plain[0], rtol=0, atol=1e-6)


def test_subset_and_layout_errors(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("SMI_CIFAR10_ROOT", raising=False)
    write_cifar(tmp_path, "cifar100", train_per_class=1)
    subset = load_dataset(
        DatasetSpec("cifar100", str(tmp_path), {"max_images": 7, "subset_seed": 1}), "train", DATA_CONFIG
    )
    assert len(subset) == 7
    with pytest.raises(SMIError, match="cifar-10-batches-py does not exist"):
        load_dataset(DatasetSpec("cifar10", str(tmp_path)), "test", DATA_CONFIG)
    (tmp_path / FOLDERS["cifar100"] / "test").write_bytes(b"not a pickle")
    with pytest.raises(SMIError, match="cannot be read as a CIFAR pickle"):
        load_dataset(DatasetSpec("cifar100", str(tmp_path)), "test", DATA_CONFIG)
    (tmp_path / FOLDERS["cifar100"] / "test").unlink()
    with pytest.raises(SMIError, match="test is missing; expected layout"):
        load_dataset(DatasetSpec("cifar100", str(tmp_path)), "test", DATA_CONFIG)
    with pytest.raises(SMIError, match="keep_zer"):
        DatasetSpec.from_config({"name": "cifar10", "options": {"keep_zer": True}})
    with pytest.raises(SMIError, match="SMI_CIFAR10_ROOT"):
        load_dataset(DatasetSpec("cifar10"), "test", DATA_CONFIG)
