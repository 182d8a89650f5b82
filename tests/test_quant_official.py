"""Tests of the ``official`` PTQ protocol (the PSAQ-ViT / SMI quantizer) and of the range estimators."""

from __future__ import annotations

import json

import pytest
import timm
import torch

from smi.cli import main
from smi.errors import SMIError
from smi.imageset import ImageSet
from smi.inversion import InversionConfig, InversionResult
from smi.methods.registry import InversionRequest, create_method
from smi.quant import QuantConfig, calibrate, quantize_vit
from smi.quant.fake_quant import IntGrid, quantize_weight_per_channel
from smi.quant.modules import OfficialActQuantizer
from smi.quant.observers import MSE_MIN_FRACTION, MSE_STEPS, OfficialRangeObserver, RangeObserver
from smi.quant.official import OfficialQuantViT
from smi.quant.official_grid import official_act_qparams, official_fake_quantize, official_quantize_weight
from smi.quant.preprocess import keep_zero_inputs, official_calibration_inputs, uint8_round_trip
from tests.tiny import make_teacher, make_tiny_vit

# The official quantized DeiT's activation quantizers in forward order, read off
# PSAQ-ViT's models/vit_quant.py (VisionTransformer.forward_features, Block.forward,
# Attention.forward) and models/layers_quant.py (PatchEmbed.forward without norm, Mlp.forward).
OFFICIAL_PREFIX = ["qact_input", "patch_embed.QuantAct", "qact_embed", "qact_pos", "qact1"]
OFFICIAL_BLOCK = [
    "qact1",
    "attn.qact1",
    "attn.qact_attn1",
    "attn.qact2",
    "attn.qact3",
    "qact2",
    "qact3",
    "mlp.QuantAct1",
    "mlp.QuantAct2",
    "qact4",
]
OFFICIAL_SUFFIX = ["qact2", "act_out"]
IMG, PATCH = 32, 4
GRID = (IMG // PATCH, IMG // PATCH)


def official_names(depth: int) -> list[str]:
    blocks = [f"blocks.{i}.{name}" for i in range(depth) for name in OFFICIAL_BLOCK]
    return OFFICIAL_PREFIX + blocks + OFFICIAL_SUFFIX


def record_inputs(qmodel: OfficialQuantViT) -> tuple[list[str], dict[str, torch.Tensor], list]:
    """Forward hooks noting each activation quantizer's call order and input."""
    order: list[str] = []
    seen: dict[str, torch.Tensor] = {}
    handles = []
    for name, module in qmodel.act_quantizers():

        def hook(_m, args, name=name):
            order.append(name)
            seen[name] = args[0].detach().clone()

        handles.append(module.register_forward_pre_hook(hook))
    return order, seen, handles


def timm_intermediates(model: torch.nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The FP tensors at every official quantization point, from timm's own modules via hooks."""
    out: dict[str, torch.Tensor] = {}
    handles = []

    def keep(name, pre=False):
        def hook(_m, args, result=None):
            out[name] = (args[0] if pre else result).detach().clone()

        return hook

    handles.append(model.patch_embed.register_forward_hook(keep("patch_embed.QuantAct")))
    handles.append(model.norm.register_forward_hook(keep("norm")))
    for i, block in enumerate(model.blocks):
        b = f"blocks.{i}."
        handles.append(block.register_forward_pre_hook(keep(b + "in", pre=True)))
        handles.append(block.register_forward_hook(keep(b + "qact4")))
        handles.append(block.norm1.register_forward_hook(keep(b + "qact1")))
        handles.append(block.attn.qkv.register_forward_hook(keep(b + "attn.qact1")))
        handles.append(block.attn.proj.register_forward_pre_hook(keep(b + "attn.qact2", pre=True)))
        handles.append(block.attn.proj.register_forward_hook(keep(b + "attn.qact3")))
        handles.append(block.norm2.register_forward_hook(keep(b + "qact3")))
        handles.append(block.mlp.act.register_forward_hook(keep(b + "mlp.QuantAct1")))
        handles.append(block.mlp.fc2.register_forward_hook(keep(b + "mlp.QuantAct2")))
    with torch.no_grad():
        logits = model(x)
    for h in handles:
        h.remove()
    return logits, out


# ---------------------------------------------------------------------------- quantization points
def test_deit_tiny_has_the_127_official_quantizers_in_place() -> None:
    torch.manual_seed(0)
    model = timm.create_model("deit_tiny_patch16_224", pretrained=False).eval()
    qmodel = quantize_vit(model, QuantConfig(protocol="official", w_bits=4, a_bits=8))
    assert isinstance(qmodel, OfficialQuantViT)
    expected = official_names(12)
    assert len(expected) == 127
    assert [n for n, _ in qmodel.act_quantizers()] == expected

    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    order, seen, handles = record_inputs(qmodel)
    with torch.no_grad():
        logits = qmodel.logits(x)  # quantizers off: the full-precision forward
    for h in handles:
        h.remove()
    assert order == expected  # each point called once, in the official order
    ref_logits, ref = timm_intermediates(model, x)
    torch.testing.assert_close(logits, ref_logits, rtol=1e-4, atol=1e-5)

    def close(name: str, tensor: torch.Tensor) -> None:
        torch.testing.assert_close(seen[name], tensor, rtol=1e-4, atol=1e-5, msg=name)

    close("qact_input", x)
    close("patch_embed.QuantAct", ref["patch_embed.QuantAct"])
    close("qact_embed", torch.cat([model.cls_token.expand(2, -1, -1), ref["patch_embed.QuantAct"]], dim=1))
    close("qact_pos", model.pos_embed.detach())
    close("qact1", ref["blocks.0.in"])
    for i in range(12):
        b = f"blocks.{i}."
        for name in (
            "qact1",
            "attn.qact1",
            "attn.qact2",
            "attn.qact3",
            "qact3",
            "mlp.QuantAct1",
            "mlp.QuantAct2",
            "qact4",
        ):
            close(b + name, ref[b + name])
        close(b + "qact2", ref[b + "in"] + ref[b + "attn.qact3"])  # first residual sum
        qkv = ref[b + "attn.qact1"].reshape(2, 197, 3, 3, 64).permute(2, 0, 3, 1, 4)
        close(b + "attn.qact_attn1", (qkv[0] @ qkv[1].transpose(-2, -1)) * model.blocks[i].attn.scale)
    close("qact2", ref["norm"][:, 0])  # the class token only
    close("act_out", ref_logits)


def test_suite_protocol_keeps_its_own_points() -> None:
    model = make_tiny_vit(depth=2)
    suite = quantize_vit(model, QuantConfig())
    names = {n for n, _ in suite.act_quantizers()}
    assert "model.blocks.0.attn.prob_quant" in names and not isinstance(suite, OfficialQuantViT)


def test_official_protocol_rejects_other_layouts() -> None:
    model = make_tiny_vit(class_token=False, global_pool="avg")
    with pytest.raises(SMIError, match="official PTQ protocol"):
        quantize_vit(model, QuantConfig(protocol="official"))
    with pytest.raises(SMIError, match="protocol"):
        QuantConfig(protocol="paper")


# ---------------------------------------------------------------------------- grids
def test_official_weight_grid_hand_computed() -> None:
    # max|w| = 15/32, so the 4-bit scale is 15/32 / 7.5 = 1/16 exactly.
    w = torch.tensor([[15 / 32, -15 / 32, 3 / 32, 5 / 32, -1 / 32]])
    # w / scale = 7.5, -7.5, 1.5, 2.5, -0.5 -> half-to-even 8, -8, 2, 2, -0 -> clip 8 to 7.
    expected = torch.tensor([[7, -8, 2, 2, 0]]) / 16
    torch.testing.assert_close(official_quantize_weight(w, 4), expected, rtol=0, atol=0)
    # The suite's narrow grid: scale 15/32 / 7, so the extremes stay exact.
    suite = quantize_weight_per_channel(w, 4)
    assert float(suite[0, 0]) == pytest.approx(15 / 32) and float(suite[0, 1]) == pytest.approx(-15 / 32)


@pytest.mark.parametrize("bits", [2, 4, 6, 8])
def test_official_weight_grid_formula_on_random_tensors(bits: int) -> None:
    w = torch.randn(16, 3, 4, 4, generator=torch.Generator().manual_seed(bits))
    rows = w.reshape(16, -1)
    scale = (rows.abs().amax(dim=1) / ((2**bits - 1) / 2)).view(-1, 1, 1, 1)  # max|w| / ((2^b - 1) / 2)
    expected = torch.clamp(torch.round(w / scale), -(2 ** (bits - 1)), 2 ** (bits - 1) - 1) * scale
    out = official_quantize_weight(w, bits)
    torch.testing.assert_close(out, expected, rtol=0, atol=0)
    levels = torch.round(out / scale)
    assert levels.min() >= -(2 ** (bits - 1)) and levels.max() <= 2 ** (bits - 1) - 1


def test_official_activation_map_hand_computed() -> None:
    lo, hi = torch.tensor(-1.0), torch.tensor(2.0)
    scale, zero_point = official_act_qparams(lo, hi, 2)  # scale 3 / 3 = 1, zero point -round(-1) = 1
    assert (float(scale), float(zero_point)) == (1.0, 1.0)
    x = torch.tensor([0.5, -3.0, 2.6])
    # 0.5 / 1 + 1 = 1.5 rounds (half to even) to 2 -> 1.0; the suite rounds 0.5 to 0 first -> 0.0.
    assert official_fake_quantize(x, scale, zero_point, 2).tolist() == [1.0, -1.0, 2.0]
    # A range above zero is not widened: zero point clamps to 0 and only [0, hi - lo] is represented.
    scale, zero_point = official_act_qparams(torch.tensor(2.0), torch.tensor(5.0), 2)
    assert float(zero_point) == 0.0
    assert official_fake_quantize(torch.tensor([5.0]), scale, zero_point, 2).tolist() == [3.0]


# ---------------------------------------------------------------------------- calibration order
def test_official_ranges_are_observed_with_full_precision_weights() -> None:
    teacher = make_teacher(make_tiny_vit(depth=2))
    gen = torch.Generator().manual_seed(0)
    images = torch.rand(8, 3, IMG, IMG, generator=gen)
    real = ImageSet(
        images, torch.ones(8, *GRID, dtype=torch.bool), torch.zeros(8, dtype=torch.long), {"method": "real"}
    )
    config = QuantConfig(protocol="official", w_bits=4, a_bits=8, calib_batch_size=8)

    # What an FP forward shows at each point (quantizers off, weights full precision).
    probe = quantize_vit(teacher.model, config)
    _, seen, handles = record_inputs(probe)
    with torch.no_grad():
        fp_logits = probe.logits(teacher.normalize(images))
    for h in handles:
        h.remove()
    torch.testing.assert_close(fp_logits, teacher.model(teacher.normalize(images)), rtol=1e-4, atol=1e-5)

    qmodel = quantize_vit(teacher.model, config)
    assert not qmodel.weights_quantized
    calibrate(qmodel, real, teacher.normalize, 8, "cpu", False)
    for name, quantizer in qmodel.act_quantizers():
        assert float(quantizer.observer.lo) == float(seen[name].min()), name
        assert float(quantizer.observer.hi) == float(seen[name].max()), name
    assert qmodel.weights_quantized  # quantized only after the ranges are fixed

    # Observing with W4 weights already in place (the suite's order) gives other ranges: the check can fail.
    qkv = teacher.model.blocks[0].attn.qkv
    with torch.no_grad():
        fp_out = torch.nn.functional.linear(seen["blocks.0.qact1"], qkv.weight, qkv.bias)
        w4_out = torch.nn.functional.linear(seen["blocks.0.qact1"], official_quantize_weight(qkv.weight, 4), qkv.bias)
    assert float(fp_out.max()) != float(w4_out.max())


def test_official_running_range_quirk() -> None:
    observer = OfficialRangeObserver()
    observer.observe(torch.tensor([-2.0, 0.0]))  # max exactly 0: the next batch replaces the range
    observer.observe(torch.tensor([1.0, 3.0]))
    assert (float(observer.lo), float(observer.hi)) == (1.0, 3.0)
    merged = RangeObserver()
    merged.observe(torch.tensor([-2.0, 0.0]))
    merged.observe(torch.tensor([1.0, 3.0]))
    assert (float(merged.lo), float(merged.hi)) == (-2.0, 3.0)


# ---------------------------------------------------------------------------- image preprocessing
def test_uint8_keep_zero_round_trip_hand_computed() -> None:
    def normalize(x: torch.Tensor) -> torch.Tensor:
        return (x - 0.5) / 0.25

    pixels = torch.tensor([0.0, 0.5, 1.0, 0.0039, 0.999, 1.7]).view(1, 1, 2, 3).expand(1, 3, 2, 3).clone()
    # 255x: 0, 127.5, 255, 0.99, 254.7, clipped 255 -> truncated 0, 127, 255, 0, 254, 255.
    assert (uint8_round_trip(pixels)[0, 0].flatten() * 255).round().tolist() == [0, 127, 255, 0, 254, 255]
    masks = torch.ones(1, 1, 1, dtype=torch.bool)
    out = official_calibration_inputs(pixels, masks, normalize, (2, 3), synthetic=True)[0, 0].flatten()
    expected = [0.0, (127 / 255 - 0.5) / 0.25, 2.0, 0.0, (254 / 255 - 0.5) / 0.25, 2.0]  # zeros kept at 0, not -2
    torch.testing.assert_close(out, torch.tensor(expected), rtol=0, atol=1e-6)
    # Reference sources (noise, real) are only normalised: unclipped values survive.
    plain = official_calibration_inputs(pixels, masks, normalize, (2, 3), synthetic=False)[0, 0].flatten()
    torch.testing.assert_close(plain, normalize(pixels)[0, 0].flatten())
    # Already-normalised test images: exact pixel zeros (value -2 here) become 0.
    assert keep_zero_inputs(normalize(pixels), normalize)[0, 0].flatten()[0] == 0.0


def test_official_sparse_calibration_zeroes_stopped_patches_and_runs_kept_tokens() -> None:
    teacher = make_teacher(make_tiny_vit(depth=2))
    gen = torch.Generator().manual_seed(0)
    images = 0.2 + 0.6 * torch.rand(4, 3, IMG, IMG, generator=gen)
    masks = torch.zeros(4, *GRID, dtype=torch.bool)
    masks[:, :3, :] = True  # 24 of 64 patches kept
    labels = torch.zeros(4, dtype=torch.long)
    config = QuantConfig(protocol="official", calib_batch_size=4)

    def calibrated(content: float) -> OfficialQuantViT:
        filled = torch.where(
            masks.repeat_interleave(PATCH, 1).repeat_interleave(PATCH, 2)[:, None], images, torch.full((), content)
        )
        qmodel = quantize_vit(teacher.model, config)
        calibrate(qmodel, ImageSet(filled, masks, labels, {"method": "smi"}), teacher.normalize, 4, "cpu", False)
        return qmodel

    black, white = calibrated(0.0), calibrated(1.0)
    assert black.activation_ranges() == white.activation_ranges()  # stopped patches are zeroed first
    # The input quantizer sees the zeros of the stopped patches (the official forward embeds them)...
    assert float(black.points.qact_input.observer.lo) <= 0.0 <= float(black.points.qact_input.observer.hi)
    # ...and the blocks run on the class token plus the 24 kept tokens.
    order, seen, handles = record_inputs(black)
    black.set_mode("off")
    with torch.no_grad():
        black.forward_masked(teacher.normalize(images), masks)
    for h in handles:
        h.remove()
    assert seen["qact1"].shape[1] == 1 + GRID[0] * GRID[1] and seen["blocks.0.qact1"].shape[1] == 1 + 24


# ---------------------------------------------------------------------------- range estimators
def test_percentile_on_a_known_tensor() -> None:
    observer = RangeObserver("percentile", percentile=99.0)
    observer.observe(torch.arange(10001, dtype=torch.float32).view(1, -1) / 100)  # 0.00 .. 100.00
    lo, hi = observer.range(IntGrid.asymmetric(8))
    assert (float(lo), float(hi)) == pytest.approx((1.0, 99.0), abs=1e-4)


@pytest.mark.parametrize("official", [False, True])
def test_mse_search_finds_the_known_optimum(official: bool) -> None:
    # A bulk exactly on the 2-bit grid of [0, 3c] plus one outlier at 3c / a*: clipping at a* leaves
    # only the outlier's error, any other factor misplaces the 40 000 bulk values.
    grid_factors = torch.linspace(1.0, MSE_MIN_FRACTION, MSE_STEPS)
    a_star, c = float(grid_factors[20]), 0.5
    values = torch.cat([torch.tensor([0.0, c, 2 * c, 3 * c]).repeat(10000), torch.tensor([3 * c / a_star])])
    if official:
        quantizer = OfficialActQuantizer(2, "mse")
        quantizer.mode = "observe"
        quantizer(values)
        quantizer.finalize()
        lo, hi = quantizer.quantization_range()
    else:
        observer = RangeObserver("mse")
        observer.observe(values)
        lo, hi = (float(v) for v in observer.range(IntGrid.asymmetric(2)))
    assert lo == pytest.approx(0.0, abs=1e-6) and hi == pytest.approx(3 * c, rel=1e-5)
    minmax = RangeObserver("minmax")
    minmax.observe(values)
    assert float(minmax.range(IntGrid.asymmetric(2))[1]) > 1.3 * hi


# ---------------------------------------------------------------------------- noise and CLI
def test_official_noise_is_unclipped() -> None:
    teacher = make_teacher(make_tiny_vit(depth=1))
    request = InversionRequest(teacher, torch.zeros(4, dtype=torch.long), InversionConfig(), 3, torch.device("cpu"))
    official = create_method("noise", {"protocol": "official"}).invert(request)[0]
    suite = create_method("noise", {}).invert(request)[0]
    assert isinstance(official, InversionResult)
    noise = torch.randn((4, 3, IMG, IMG), generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(teacher.normalize(official.images), noise, rtol=0, atol=1e-5)
    assert official.images.min() < 0 and official.images.max() > 1
    assert suite.images.min() >= 0 and suite.images.max() <= 1
    with pytest.raises(SMIError, match="protocol"):
        create_method("noise", {"protocol": "paper"})


def test_cli_protocol_and_two_estimators(tmp_path, monkeypatch) -> None:
    import smi.cli.quantize as cli

    teacher = make_teacher(make_tiny_vit(depth=1))
    gen = torch.Generator().manual_seed(0)
    test_set = torch.utils.data.TensorDataset(
        teacher.normalize(torch.rand(16, 3, IMG, IMG, generator=gen)), torch.randint(0, 10, (16,), generator=gen)
    )

    class Spec:
        name = "toy"

    monkeypatch.setattr(cli, "load_teacher", lambda path, device: teacher)
    monkeypatch.setattr(cli, "load_split", lambda values, split, t: (Spec, test_set))
    calib = tmp_path / "set.pt"
    ImageSet(
        torch.rand(8, 3, IMG, IMG, generator=gen),
        torch.ones(8, *GRID, dtype=torch.bool),
        torch.zeros(8, dtype=torch.long),
        {"method": "smi"},
    ).save(calib)
    outs = [tmp_path / f"{n}.json" for n in ("w4a8-minmax", "w4a8-mse")]
    argv = [
        "quantize",
        "--teacher",
        "t.pt",
        "--dataset-spec",
        '{"name": "toy"}',
        "--calib-set",
        str(calib),
        "--calib-size",
        "8",
        "--bits",
        "4/8",
        "--range-estimator",
        "minmax",
        "mse",
        "--protocol",
        "official",
        "--out",
        *map(str, outs),
        "--no-progress",
    ]
    assert main(argv) == 0
    records = [json.loads(p.read_text()) for p in outs]
    assert [r["range_estimator"] for r in records] == ["minmax", "mse"]
    assert all(r["protocol"] == "official" and r["num_act_quantizers"] == 5 + 10 + 2 for r in records)
    assert records[0]["fp_top1"] == records[1]["fp_top1"]
    assert main(argv[:-4] + ["--out", str(outs[0]), "--no-progress"]) == 2  # one output for two estimators


# ---------------------------------------------------------------------------- quantization table
def test_quantization_table_has_min_max_and_mse_rows() -> None:
    from smi.report.aggregate import aggregate
    from smi.report.render import render_markdown
    from smi.report.tables import quantization_table

    def record(calibration: str, estimator: str, seed: int, top1: float) -> dict:
        return {
            "kind": "quantization",
            "dataset": "digits",
            "teacher": "vit-t",
            "calibration": calibration,
            "seed": seed,
            "w_bits": 4,
            "a_bits": 4,
            "range_estimator": estimator,
            "protocol": "official",
            "calib_size": 32,
            "top1": top1,
            "fp_top1": 90.0,
        }

    records = [
        record("noise", "minmax", 0, 70.0),
        record("smi", "minmax", 0, 60.0),
        record("real", "minmax", 0, 80.0),
        record("noise", "mse", 0, 72.0),
        record("smi", "mse", 0, 75.0),
        record("real", "mse", 0, 85.0),
        record("smi", "mse", 1, 77.0),
    ]
    table = quantization_table(aggregate([(f"r{i}", r) for i, r in enumerate(records)]).summary)
    text = render_markdown(table)
    rows = [
        [p.strip() for p in line.strip().strip("|").split("|")] for line in text.splitlines() if line.startswith("|")
    ][2:]
    assert [r[:2] for r in rows] == [
        ["", "FP (reference)"],
        ["min/max", "Noise"],
        ["min/max", "Real data"],
        ["min/max", "SMI"],
        ["MSE", "Noise"],
        ["MSE", "Real data"],
        ["MSE", "SMI"],
    ]
    by_row = {tuple(r[:2]): r[2] for r in rows}
    assert by_row[("", "FP (reference)")] == "90.00"
    assert by_row[("min/max", "Noise")] == "**70.00**"  # best data-free source within the min/max block
    assert by_row[("MSE", "SMI")] == "**76.00 ± 1.41**"  # and within the MSE block
    assert by_row[("MSE", "Real data")] == "85.00"  # a reference, never bold
    assert "Protocol: official." in text
