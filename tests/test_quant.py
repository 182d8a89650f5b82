"""Tests of the post-training quantization evaluator (smi.quant, smi quantize)."""

from __future__ import annotations

import json

import pytest
import timm
import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

from smi.cli import main
from smi.errors import SMIError
from smi.imageset import ImageSet
from smi.quant import IntGrid, QuantConfig, calibrate, fake_quantize, quantize_vit, run_ptq
from smi.quant.fake_quant import asymmetric_qparams, quantize_weight_per_channel, symmetric_qparams
from smi.records import COMMON_KEYS, PTQ_KEYS
from smi.types import Teacher

SIZE, PATCH, CLASSES = 16, 4, 6
GRID = (SIZE // PATCH, SIZE // PATCH)
DATA_CONFIG = {"input_size": (3, SIZE, SIZE), "mean": (0.5, 0.5, 0.5), "std": (0.25, 0.25, 0.25)}


def make_images(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A learnable toy task: each class is a fixed +-1 pattern over the patch grid, plus noise."""
    protos = (torch.rand(CLASSES, 3, *GRID, generator=torch.Generator().manual_seed(1234)) > 0.5).float() * 2 - 1
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, CLASSES, (n,), generator=g)
    base = F.interpolate(protos[labels], size=SIZE, mode="nearest")
    return (0.5 + 0.2 * base + 0.35 * torch.randn(n, 3, SIZE, SIZE, generator=g)).clamp(0, 1), labels


def make_model(seed: int = 0, **kwargs) -> torch.nn.Module:
    torch.manual_seed(seed)
    options = dict(embed_dim=32, depth=2, num_heads=2, mlp_ratio=2.0)
    options.update(kwargs)
    return timm.create_model(
        "vit_tiny_patch16_224", img_size=SIZE, patch_size=PATCH, num_classes=CLASSES, **options
    ).eval()


def dense_set(images: torch.Tensor, labels: torch.Tensor, method: str) -> ImageSet:
    masks = torch.ones(len(images), *GRID, dtype=torch.bool)
    return ImageSet(images, masks, labels, {"method": method, "teacher": {"num_classes": CLASSES}})


@pytest.fixture(scope="module")
def trained() -> tuple[Teacher, torch.Tensor, torch.Tensor, TensorDataset]:
    """A tiny teacher trained on the toy task; its training images and a test split."""
    model = make_model()
    teacher = Teacher(model, "vit_tiny_patch16_224", CLASSES, DATA_CONFIG, "toy")
    images, labels = make_images(1024, seed=1)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    gen = torch.Generator().manual_seed(0)
    for _ in range(60):
        idx = torch.randint(0, len(images), (64,), generator=gen)
        loss = F.cross_entropy(model(teacher.normalize(images[idx])), labels[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    test_images, test_labels = make_images(600, seed=2)
    return teacher, images, labels, TensorDataset(teacher.normalize(test_images), test_labels)


# ---------------------------------------------------------------------------- arithmetic
@pytest.mark.parametrize("bits", [2, 4, 8, 16])
def test_fake_quantize_per_tensor_matches_torch(bits: int) -> None:
    torch.manual_seed(bits)
    grid = IntGrid.asymmetric(bits)
    x = torch.randn(4096) * 3
    scale, zero_point = asymmetric_qparams(x.min() * 0.8, x.max() * 0.8, grid)  # some values clip
    # Exact ties (k + 0.5) * scale exercise the round-half-to-even rule.
    x = torch.cat([x, (torch.arange(-20, 20) + 0.5) * scale])
    ours = fake_quantize(x, scale, zero_point, grid)
    ref = torch.fake_quantize_per_tensor_affine(x, scale, zero_point.int(), grid.qmin, grid.qmax)
    torch.testing.assert_close(ours, ref, rtol=0, atol=0)


@pytest.mark.parametrize("bits", [2, 4, 6, 8])
def test_fake_quantize_per_channel_matches_torch(bits: int) -> None:
    torch.manual_seed(bits)
    weight = torch.randn(24, 3, 4, 4) * torch.rand(24, 1, 1, 1) * 5
    grid = IntGrid.symmetric(bits)
    scale, zero_point = symmetric_qparams(weight.abs().flatten(1).amax(1), grid)
    ref = torch.fake_quantize_per_channel_affine(weight, scale, zero_point.int(), 0, grid.qmin, grid.qmax)
    torch.testing.assert_close(quantize_weight_per_channel(weight, bits), ref, rtol=0, atol=0)
    # And with arbitrary integer zero points on an unsigned grid.
    ugrid = IntGrid.asymmetric(bits)
    zp = torch.randint(0, ugrid.qmax + 1, (24,)).float()
    ours = fake_quantize(weight, scale.view(-1, 1, 1, 1), zp.view(-1, 1, 1, 1), ugrid)
    ref = torch.fake_quantize_per_channel_affine(weight, scale, zp.int(), 0, ugrid.qmin, ugrid.qmax)
    torch.testing.assert_close(ours, ref, rtol=0, atol=0)


def test_fake_quantize_is_straight_through() -> None:
    x = torch.linspace(-2, 2, 101, requires_grad=True)
    grid = IntGrid.asymmetric(4)
    scale, zero_point = asymmetric_qparams(torch.tensor(-1.0), torch.tensor(1.0), grid)
    fake_quantize(x, scale, zero_point, grid).sum().backward()
    q = torch.round(x.detach() / scale) + zero_point
    inside = (q >= grid.qmin) & (q <= grid.qmax)
    assert 0 < int(inside.sum()) < len(x)
    torch.testing.assert_close(x.grad, inside.float(), atol=0, rtol=0)  # identity inside, zero when clipped


@pytest.mark.parametrize("bits", [1, 17, 0, 2.5])
def test_bits_outside_range_rejected(bits) -> None:
    with pytest.raises(SMIError, match="bit-width"):
        QuantConfig(w_bits=bits)
    with pytest.raises(SMIError, match="bit-width"):
        QuantConfig(a_bits=bits)


# ---------------------------------------------------------------------------- model
def test_quantized_copy_leaves_original_and_matches_fp_at_16_bits() -> None:
    model = make_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(5, 3, SIZE, SIZE)
    qmodel = quantize_vit(model, QuantConfig(w_bits=16, a_bits=16))
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), f"original model changed at {k}"
    with torch.no_grad():
        fp = model(x)
        torch.testing.assert_close(qmodel.logits(x), fp, atol=1e-3, rtol=1e-3)  # quantizers off
        # Calibrate on the evaluated images themselves (identity normalisation): nothing clips.
        calib = dense_set(x, torch.zeros(5, dtype=torch.long), "real")
        calibrate(qmodel, calib, lambda t: t, 4, "cpu", False)
        torch.testing.assert_close(qmodel.logits(x), fp, atol=5e-3, rtol=5e-3)
        coarse = quantize_vit(model, QuantConfig(w_bits=4, a_bits=4))
        calibrate(coarse, calib, lambda t: t, 4, "cpu", False)
        assert (coarse.logits(x) - fp).abs().max() > 10 * (qmodel.logits(x) - fp).abs().max()


def test_every_linear_and_attention_is_quantized() -> None:
    qmodel = quantize_vit(make_model(), QuantConfig())
    plain = [n for n, m in qmodel.named_modules() if type(m) is torch.nn.Linear]
    assert plain == [], f"unquantized linear layers: {plain}"
    names = {n for n, _ in qmodel.act_quantizers()}
    assert {"input_quant", "embed_quant", "model.blocks.0.attn.prob_quant", "model.head.input_quant"} <= names
    proj = qmodel.model.patch_embed.proj.weight
    assert len(torch.unique(proj[0])) <= 2**7 - 1  # per-channel symmetric 8-bit grid


def test_sparse_calibration_ignores_stopped_patches() -> None:
    """Ranges from sparse images must not depend on what the stopped patches hold."""
    gen = torch.Generator().manual_seed(0)
    images = 0.25 + 0.5 * torch.rand(6, 3, SIZE, SIZE, generator=gen)
    masks = torch.rand(6, *GRID, generator=gen) > 0.5
    masks[:, 0, 0] = True
    pixel_mask = masks.repeat_interleave(PATCH, 1).repeat_interleave(PATCH, 2)[:, None]
    black = torch.where(pixel_mask, images, torch.zeros(()))
    white = torch.where(pixel_mask, images, torch.ones(()))
    labels = torch.zeros(6, dtype=torch.long)
    teacher = Teacher(make_model(), "vit_tiny_patch16_224", CLASSES, DATA_CONFIG, "toy")

    def ranges(image_set: ImageSet) -> dict[str, tuple[float, float]]:
        qmodel = quantize_vit(teacher.model, QuantConfig())
        calibrate(qmodel, image_set, teacher.normalize, 4, "cpu", False)
        return {n: (float(q.scale), float(q.zero_point)) for n, q in qmodel.act_quantizers()}

    sparse_black = ranges(ImageSet(black, masks, labels))
    assert sparse_black == ranges(ImageSet(white, masks, labels))
    # Forwarding the black pixels (dense masks) would widen the input range: the check can fail.
    dense_black = ranges(ImageSet(black, torch.ones_like(masks), labels))
    assert dense_black["input_quant"][0] > sparse_black["input_quant"][0]


@pytest.mark.parametrize("estimator", ["percentile", "mse"])
def test_clipping_estimators_narrow_the_range(estimator: str) -> None:
    teacher = Teacher(make_model(), "vit_tiny_patch16_224", CLASSES, DATA_CONFIG, "toy")
    images = dense_set(*make_images(16, seed=3), "real")
    scales = {}
    for name in ("minmax", estimator):
        qmodel = quantize_vit(teacher.model, QuantConfig(a_bits=4, range_estimator=name, percentile=99.0))
        calibrate(qmodel, images, teacher.normalize, 8, "cpu", False)
        scales[name] = {n: float(q.scale) for n, q in qmodel.act_quantizers()}
    assert all(scales[estimator][n] <= scales["minmax"][n] * (1 + 1e-6) for n in scales["minmax"])
    assert sum(scales[estimator].values()) < 0.99 * sum(scales["minmax"].values())


# ---------------------------------------------------------------------------- evaluator
def test_w8a8_real_calibration_close_to_fp_and_deterministic(trained) -> None:
    teacher, images, labels, test_set = trained
    real = dense_set(images[:256], labels[:256], "real")
    config = QuantConfig(w_bits=8, a_bits=8)
    first = run_ptq(teacher, real, test_set, config, seed=0, device="cpu", progress=False)
    assert first["fp_top1"] > 80.0, "the toy teacher did not learn; the checks below would be vacuous"
    assert abs(first["top1"] - first["fp_top1"]) <= 1.0
    again = run_ptq(teacher, real, test_set, config, seed=0, device="cpu", progress=False)
    assert again["top1"] == first["top1"] and again["top5"] == first["top5"]
    assert first["calib_size"] == 32 and first["calib_sparsity"] == 0.0


def test_bad_calibration_sets_rejected(trained) -> None:
    teacher, images, labels, test_set = trained
    config = QuantConfig()
    empty = ImageSet(
        torch.zeros(0, 3, SIZE, SIZE), torch.zeros(0, *GRID, dtype=torch.bool), torch.zeros(0, dtype=torch.long)
    )
    with pytest.raises(SMIError, match="empty"):
        run_ptq(teacher, empty, test_set, config, 0, "cpu", progress=False)
    wrong_size = ImageSet(
        torch.rand(40, 3, 32, 32), torch.ones(40, 8, 8, dtype=torch.bool), torch.zeros(40, dtype=torch.long)
    )
    with pytest.raises(SMIError, match="another teacher"):
        run_ptq(teacher, wrong_size, test_set, config, 0, "cpu", progress=False)
    wrong_classes = dense_set(images[:40], labels[:40], "real")
    wrong_classes.metadata["teacher"] = {"num_classes": 1000}
    with pytest.raises(SMIError, match="classes"):
        run_ptq(teacher, wrong_classes, test_set, config, 0, "cpu", progress=False)
    with pytest.raises(SMIError, match="holds only"):
        run_ptq(teacher, dense_set(images[:8], labels[:8], "real"), test_set, config, 0, "cpu", progress=False)


def test_cli_writes_metrics(trained, tmp_path, monkeypatch) -> None:
    teacher, images, labels, test_set = trained
    import smi.cli.quantize as cli

    class Spec:
        name = "toy"

    monkeypatch.setattr(cli, "load_teacher", lambda path, device: teacher)
    monkeypatch.setattr(cli, "load_split", lambda values, split, t: (Spec, test_set))
    calib = tmp_path / "set.pt"
    dense_set(images[:64], labels[:64], "real").save(calib)
    out = tmp_path / "q.json"
    argv = [
        "quantize",
        "--teacher",
        "t.pt",
        "--dataset-spec",
        '{"name": "toy"}',
        "--calib-set",
        str(calib),
        "--calib-size",
        "32",
        "--w-bits",
        "4",
        "--a-bits",
        "8",
        "--out",
        str(out),
        "--no-progress",
    ]
    assert main(argv) == 0
    record = json.loads(out.read_text())
    # The record contract (smi.records): the run's figures are exactly the documented PTQ_KEYS.
    assert set(record) == {*COMMON_KEYS, "calibration", "image_set", "set_teacher", "allow_foreign_set", *PTQ_KEYS}
    for key in (
        "kind",
        "dataset",
        "teacher",
        "model_name",
        "calibration",
        "seed",
        "w_bits",
        "a_bits",
        "calib_size",
        "top1",
        "top5",
        "fp_top1",
        "fp_top5",
        "range_estimator",
        "provenance",
    ):
        assert key in record, key
    assert record["kind"] == "quantization" and record["calibration"] == "real" and record["teacher"] == "t"
    assert (record["w_bits"], record["a_bits"], record["calib_size"]) == (4, 8, 32)
    ranges = record["activation_ranges"]
    assert len({r["quantizer"] for r in ranges}) == len(ranges) >= 4
    assert all(r["lo"] <= 0.0 <= r["hi"] and r["lo"] < r["hi"] for r in ranges)
    bad = argv[:-3] + ["--w-bits", "17", "--out", str(tmp_path / "bad.json"), "--no-progress"]
    assert main(bad) == 2
    assert not (tmp_path / "bad.json").exists()
