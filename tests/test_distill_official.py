"""The official knowledge-transfer protocol (test_kt.py of the official SMI code): optimiser,
one step per epoch, growing pool, linear probe, best vs final, resume bit-identity, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

import smi.distill.official as official
from smi.cli import main
from smi.config import to_dict
from smi.distill.config import OfficialRecipe, StudentSpec, parse_recipe
from smi.distill.official import (
    build_official_student,
    distill_official,
    keep_zero_normalize,
    nonzero_patch_mask,
    official_kd_loss,
)
from smi.distill.pool import ImagePool, to_uint8
from smi.errors import SMIError
from smi.imageset import ImageSet
from smi.inversion import InversionConfig
from smi.methods.registry import create_method
from smi.methods.synthesize import synthesize
from tests.test_quant import CLASSES, GRID, PATCH, SIZE, make_model, trained  # noqa: F401 (fixture)

ARCH = {"embed_dim": 32, "depth": 2, "num_heads": 2, "mlp_ratio": 2.0}  # the teacher's (tests.test_quant)
TINY_INVERSION = InversionConfig(iterations=6, batch_size=4, warmup_iterations=0, measure_costs=False)
SMI_PARAMS = {"iterations": [2, 4], "ratio": 0.5}


@pytest.fixture
def student_spec(tmp_path) -> StudentSpec:
    """A 'pretrained' checkpoint of the teacher's architecture (other weights, other head)."""
    path = tmp_path / "pretrained.pth"
    model = make_model(seed=7)
    model.reset_classifier(11)
    torch.save(model.state_dict(), path)
    return StudentSpec(
        model="vit_tiny_patch16_224", model_kwargs=ARCH, init="checkpoint", checkpoint=str(path), train="linear"
    )


def fake_synthesize(calls: list[dict]):
    """A stand-in synthesis: random images, half the patches kept, recording each call."""

    def run(**kwargs) -> tuple[ImageSet, dict]:
        calls.append(kwargs)
        gen = torch.Generator().manual_seed(kwargs["seed"])
        n = kwargs["num_images"]
        keep = torch.rand(n, *GRID, generator=gen) < 0.5
        keep[:, 0, 0] = True
        images = torch.rand(n, 3, SIZE, SIZE, generator=gen)
        return ImageSet(images, keep, torch.randint(0, CLASSES, (n,), generator=gen), {"method": "fake"}), {}

    return run


def run_official(trained, spec, state, recipe, synth=None, method="smi", **kwargs):
    teacher, _, _, test_set = trained
    return distill_official(
        teacher=teacher,
        method=create_method(method, SMI_PARAMS if method == "smi" else {}),
        inversion_config=TINY_INVERSION,
        student_spec=spec,
        recipe=recipe,
        test_set=test_set,
        seed=3,
        device="cpu",
        state_dir=state,
        progress=False,
        synthesize_fn=synth or synthesize,
        **kwargs,
    )


# ---------------------------------------------------------------------------- recipe and optimiser
def test_official_recipe_is_test_kt_defaults() -> None:
    recipe = OfficialRecipe()
    assert (recipe.epochs, recipe.images_per_epoch, recipe.batch_size) == (1000, 100, 32)
    assert (recipe.lr, recipe.momentum, recipe.weight_decay, recipe.temperature) == (0.1, 0.9, 1e-4, 20.0)
    assert recipe.eval_every == 1 and to_dict(recipe)["protocol"] == "official"
    with pytest.raises(SMIError, match="augment"):
        parse_recipe("official", {"augment": "none"})
    with pytest.raises(SMIError, match="protocol 'sweet'|unknown"):
        parse_recipe("sweet", {})
    assert parse_recipe("suite", {"epochs": 2}).epochs == 2


def test_official_optimiser_is_constant_lr_sgd(trained, student_spec, tmp_path) -> None:
    recipe = OfficialRecipe(epochs=3, images_per_epoch=4, batch_size=3, eval_every=3, checkpoint_every=1)
    state = tmp_path / "state"
    run_official(trained, student_spec, state, recipe, fake_synthesize([]))
    saved = torch.load(state / "checkpoint.pt", weights_only=False)
    (group,) = saved["optimizer"]["param_groups"]
    assert (group["lr"], group["momentum"], group["weight_decay"]) == (0.1, 0.9, 1e-4)
    assert group["dampening"] == 0 and group["nesterov"] is False
    # Only the head has momentum buffers: the body never received a gradient.
    assert len(saved["optimizer"]["state"]) == 2 and set(saved["trainable"]) == {"head.weight", "head.bias"}


def test_official_kd_loss_is_the_official_kldiv() -> None:
    torch.manual_seed(0)
    s, t = torch.randn(8, 5), torch.randn(8, 5)
    p = (t / 20).softmax(1)
    expected = (p * (p.log() - (s / 20).log_softmax(1))).sum(1).mean() * 400
    torch.testing.assert_close(official_kd_loss(s, t, 20.0), expected)


# ---------------------------------------------------------------------------- schedule and pool
def test_one_step_per_epoch_on_a_growing_pool(trained, student_spec, tmp_path, monkeypatch) -> None:
    calls: list[dict] = []
    steps, draws = [], []
    step = torch.optim.SGD.step
    monkeypatch.setattr(torch.optim.SGD, "step", lambda self, *a, **k: (steps.append(1), step(self, *a, **k))[1])
    draw = ImagePool.draw

    def spy(self, batch_size, generator):
        index, pixels = draw(self, batch_size, generator)
        draws.append((len(self), index.clone(), pixels))
        return index, pixels

    monkeypatch.setattr(ImagePool, "draw", spy)
    recipe = OfficialRecipe(epochs=5, images_per_epoch=4, batch_size=6, eval_every=1, checkpoint_every=5)
    result = run_official(trained, student_spec, tmp_path / "state", recipe, fake_synthesize(calls))
    assert len(calls) == 5 and len(steps) == 5, "one synthesis and one optimiser step per epoch"
    assert all(c["num_images"] == 4 and c["config"].batch_size == 4 for c in calls), "one inversion batch per epoch"
    assert len({c["seed"] for c in calls}) == 5, "every epoch synthesises new images"
    assert [r["pool_size"] for r in result.curve] == [4, 8, 12, 16, 20] and result.pool_size == 20
    for size, index, pixels in draws:
        assert len(index) == min(6, size) and len(set(index.tolist())) == len(index), (
            "a batch draws without replacement"
        )
        assert int(index.max()) < size
        assert torch.equal(pixels * 255, (pixels * 255).round()), "pool images are 8-bit"
    # Draws cover the whole pool, not only the newest epoch.
    assert any(int(i.min()) < s - 4 for s, i, _ in draws[1:])


def test_pool_draws_uniformly_from_all_epochs(tmp_path) -> None:
    pool = ImagePool(tmp_path, key="k")
    for epoch in (1, 2, 3):
        images = torch.full((4, 3, 8, 8), epoch / 10)
        pool.write(
            epoch, ImageSet(images, torch.ones(4, 2, 2, dtype=torch.bool), torch.zeros(4, dtype=torch.long), {}), (4, 4)
        )
        pool.load(epoch)
    gen = torch.Generator().manual_seed(0)
    counts = torch.zeros(12)
    for _ in range(600):
        index, _ = pool.draw(3, gen)
        counts[index] += 1
    assert bool((counts > 100).all()) and bool((counts < 200).all()), counts  # 150 expected each


def test_pool_stores_masked_truncated_uint8(tmp_path) -> None:
    assert to_uint8(torch.tensor([0.0, 0.5, 0.999, 1.0, 1.2, -0.1])).tolist() == [0, 127, 254, 255, 255, 0]
    pool = ImagePool(tmp_path, key="k")
    mask = torch.tensor([[[True, False], [False, True]]])
    pool.write(1, ImageSet(torch.full((1, 3, 8, 8), 0.7), mask, torch.zeros(1, dtype=torch.long), {}), (4, 4))
    pool.load(1)
    stored = pool.images(torch.tensor([0]))[0]
    assert stored.dtype == torch.uint8 and int(stored[:, :4, :4].min()) == 178 and int(stored[:, :4, 4:].max()) == 0
    normalised = keep_zero_normalize(
        stored[None].float() / 255, torch.full((1, 3, 1, 1), 0.5), torch.full((1, 3, 1, 1), 0.25)
    )
    assert bool((normalised[:, :, :4, 4:] == 0).all()), "keep_zero: stopped (black) pixels stay 0"
    assert torch.equal(nonzero_patch_mask(normalised, (4, 4)), mask)


def test_keep_zero_normalize_and_nonzero_patches() -> None:
    x = torch.tensor([0.0, 0.25, 0.5]).view(1, 3, 1, 1).expand(1, 3, 2, 2).clone()
    out = keep_zero_normalize(x, torch.full((1, 3, 1, 1), 0.5), torch.full((1, 3, 1, 1), 0.25))
    assert out[0, :, 0, 0].tolist() == [0.0, -1.0, 0.0]
    patches = torch.zeros(2, 3, 4, 4)
    patches[0, 1, 3, 0] = 1.0  # one non-zero value keeps its patch
    assert nonzero_patch_mask(patches, (2, 2)).tolist() == [
        [[False, False], [True, False]],
        [[False, False], [False, False]],
    ]


# ---------------------------------------------------------------------------- student
def test_linear_probe_student_only_head_changes(trained, student_spec, tmp_path) -> None:
    teacher = trained[0]
    fresh = build_official_student(student_spec, teacher, 3, "cpu")
    torch.manual_seed(3)
    default_init = nn.Linear(ARCH["embed_dim"], CLASSES)
    assert torch.equal(fresh.head.weight, default_init.weight), "the new head is PyTorch's default nn.Linear init"
    pretrained = torch.load(student_spec.checkpoint, weights_only=True)
    recipe = OfficialRecipe(epochs=3, images_per_epoch=4, batch_size=4, eval_every=3)
    result = run_official(trained, student_spec, tmp_path / "s", recipe, fake_synthesize([]))
    for key, value in result.student.state_dict().items():
        if key.startswith("head."):
            assert not torch.equal(value, fresh.state_dict()[key]), f"{key} did not train"
        else:
            assert torch.equal(value, pretrained[key]), f"{key} changed: the backbone must stay frozen"


def test_official_student_must_be_the_teachers_architecture_probed_linearly(trained, student_spec) -> None:
    teacher = trained[0]
    for change, message in (
        ({"model": "vit_small_patch16_224"}, "model"),
        ({"train": "full"}, "train 'full'"),
        ({"init": "scratch", "checkpoint": None, "train": "full"}, "init 'scratch'"),
    ):
        spec = StudentSpec(**{**to_dict(student_spec), **change})
        with pytest.raises(SMIError, match=message):
            build_official_student(spec, teacher, 0, "cpu")


# ---------------------------------------------------------------------------- reporting
def test_best_and_final_are_both_reported(trained, student_spec, tmp_path, monkeypatch) -> None:
    scores = iter([10.0, 30.0, 30.0, 20.0])
    real = official.evaluate_logits

    def scripted(model, dataset, *args, **kwargs):
        if model is trained[0].model:
            return real(model, dataset, *args, **kwargs)
        top1 = next(scores)
        return {"top1": top1, "top5": top1 + 1, "num_images": 1}

    monkeypatch.setattr(official, "evaluate_logits", scripted)
    recipe = OfficialRecipe(epochs=4, images_per_epoch=2, batch_size=2)
    result = run_official(trained, student_spec, tmp_path / "s", recipe, fake_synthesize([]))
    assert [r["test_top1"] for r in result.curve] == [10.0, 30.0, 30.0, 20.0]
    assert result.final["test_top1"] == 20.0
    assert result.best == {"epoch": 2, "test_top1": 30.0, "test_top5": 31.0}, "the first epoch with the best top-1"


# ---------------------------------------------------------------------------- resume
def test_interrupted_run_resumes_bit_identically(trained, student_spec, tmp_path) -> None:
    recipe = OfficialRecipe(epochs=5, images_per_epoch=3, batch_size=4, eval_every=2, checkpoint_every=2)
    straight = run_official(trained, student_spec, tmp_path / "a", recipe)

    def crash_at_four(**kwargs):
        if kwargs["seed"] == official.epoch_seed(3, 4):
            raise RuntimeError("node lost")
        return synthesize(**kwargs)

    with pytest.raises(RuntimeError, match="node lost"):
        run_official(trained, student_spec, tmp_path / "b", recipe, crash_at_four)
    assert (tmp_path / "b" / "pool" / "epoch00003.pt").is_file()  # written after the last checkpoint
    resumed = run_official(trained, student_spec, tmp_path / "b", recipe)
    assert resumed.resumed_from == 2 and straight.resumed_from == 0
    for key, value in straight.student.state_dict().items():
        assert torch.equal(value, resumed.student.state_dict()[key]), key
    strip = [{k: v for k, v in r.items() if k != "wall_time_s"} for r in straight.curve]
    assert strip == [{k: v for k, v in r.items() if k != "wall_time_s"} for r in resumed.curve]
    assert straight.best == resumed.best
    for epoch in range(1, 6):
        a = torch.load(tmp_path / "a" / "pool" / f"epoch{epoch:05d}.pt", weights_only=True)
        b = torch.load(tmp_path / "b" / "pool" / f"epoch{epoch:05d}.pt", weights_only=True)
        assert torch.equal(a["images"], b["images"]) and torch.equal(a["keep_masks"], b["keep_masks"])


def test_state_of_another_run_is_refused(trained, student_spec, tmp_path) -> None:
    recipe = OfficialRecipe(epochs=2, images_per_epoch=2, batch_size=2, checkpoint_every=1)
    run_official(trained, student_spec, tmp_path / "s", recipe, fake_synthesize([]))
    other = OfficialRecipe(epochs=2, images_per_epoch=3, batch_size=2, checkpoint_every=1)
    with pytest.raises(SMIError, match="another configuration"):
        run_official(trained, student_spec, tmp_path / "s", other, fake_synthesize([]))


# ---------------------------------------------------------------------------- CLI
def test_cli_official_protocol_record(trained, student_spec, tmp_path, monkeypatch) -> None:
    teacher, _, _, test_set = trained
    import smi.cli.distill as cli

    class Spec:
        name = "digits"

    monkeypatch.setattr(cli, "load_teacher", lambda path, device: teacher)
    monkeypatch.setattr(cli, "load_split", lambda values, split, t: (Spec, test_set))
    out = tmp_path / "kd.json"
    argv = [
        "distill",
        "--protocol",
        "official",
        "--teacher",
        "t.pt",
        "--teacher-id",
        "tiny",
        "--dataset-spec",
        '{"name": "digits"}',
        "--method",
        "smi-label",
        "--inversion-method",
        "smi",
        "--method-params",
        json.dumps(SMI_PARAMS),
        "--inversion-config",
        json.dumps(to_dict(TINY_INVERSION)),
        "--student-spec",
        json.dumps(to_dict(student_spec)),
        "--recipe",
        '{"epochs": 3, "images_per_epoch": 2, "batch_size": 2, "checkpoint_every": 2}',
        "--out",
        str(out),
        "--no-progress",
    ]
    assert main(argv) == 0
    record = json.loads(out.read_text())
    assert record["protocol"] == "official" and record["method"] == "smi-label" and record["inversion_method"] == "smi"
    assert record["num_images"] == 6 and record["epochs"] == 3 and len(record["curve"]) == 3
    assert record["final_top1"] == record["curve"][-1]["test_top1"]
    assert record["official_best_top1"] == max(r["test_top1"] for r in record["curve"])
    assert record["recipe"]["lr"] == 0.1 and record["recipe"]["protocol"] == "official"
    assert not Path(f"{out}.state").exists(), "the pool is removed after success"
    suite_without_set = [
        "distill",
        "--teacher",
        "t.pt",
        "--dataset-spec",
        '{"name": "digits"}',
        "--out",
        str(tmp_path / "s.json"),
    ]
    assert main(suite_without_set) == 2 and not (tmp_path / "s.json").exists()
    bad = argv[:-3] + ["--image-set", "x.pt", "--out", str(tmp_path / "x.json"), "--no-progress"]
    assert main(bad) == 2 and not (tmp_path / "x.json").exists()
    wrong_student = argv[:]
    wrong_student[wrong_student.index("--student-spec") + 1] = json.dumps({**to_dict(student_spec), "train": "full"})
    wrong_student[wrong_student.index("--out") + 1] = str(tmp_path / "y.json")
    assert main(wrong_student) == 2 and not (tmp_path / "y.json").exists()


def test_cli_official_on_a_cifar_folder(tmp_path) -> None:
    """The whole path: a CIFAR-10 teacher from a local checkpoint (as the official .pth files), the torchvision
    layout, keep_zero, the pool."""
    from tests.cifar_layout import write_cifar
    from tests.tiny import make_tiny_vit

    root = write_cifar(tmp_path / "data", "cifar10", train_per_class=1, test_per_class=2)
    dataset = json.dumps({"name": "cifar10", "root": str(root), "options": {"keep_zero": True}})
    arch = {"img_size": 16, "patch_size": 4, "embed_dim": 24, "depth": 1, "num_heads": 2, "mlp_ratio": 2.0}
    torch.save(make_tiny_vit(num_classes=10, **arch).state_dict(), tmp_path / "deit_tiny_16_cifar10.pth")
    teacher_spec = {
        "model": "vit_tiny_patch16_224",
        "model_kwargs": arch,
        "source": "checkpoint",
        "checkpoint": str(tmp_path / "deit_tiny_16_cifar10.pth"),
        "data_config": {
            "mean": [0.4914, 0.4822, 0.4465],
            "std": [0.2023, 0.1994, 0.2010],
            "interpolation": "bicubic",
            "crop_pct": 0.875,
        },
    }
    assert (
        main(
            [
                "train-teacher",
                "--teacher-spec",
                json.dumps(teacher_spec),
                "--dataset-spec",
                dataset,
                "--out",
                str(tmp_path / "teacher.pt"),
                "--metrics",
                str(tmp_path / "teacher.json"),
            ]
        )
        == 0
    )
    pretrained = make_tiny_vit(num_classes=1000, **arch)
    torch.manual_seed(1)
    for p in pretrained.parameters():
        p.data.add_(0.01 * torch.randn_like(p))
    torch.save(pretrained.state_dict(), tmp_path / "in1k.pth")
    student = {
        "model": "vit_tiny_patch16_224",
        "model_kwargs": {k: v for k, v in arch.items() if "size" not in k},
        "init": "checkpoint",
        "checkpoint": str(tmp_path / "in1k.pth"),
        "train": "linear",
    }
    out, state = tmp_path / "kd.json", tmp_path / "state"
    argv = [
        "distill",
        "--protocol",
        "official",
        "--teacher",
        str(tmp_path / "teacher.pt"),
        "--dataset-spec",
        dataset,
        "--inversion-method",
        "dense",
        "--inversion-config",
        '{"iterations": 3}',
        "--student-spec",
        json.dumps(student),
        "--recipe",
        '{"epochs": 2, "images_per_epoch": 3, "batch_size": 4}',
        "--state-dir",
        str(state),
        "--keep-state",
        "--out",
        str(out),
        "--no-progress",
    ]
    assert main(argv) == 0
    record = json.loads(out.read_text())
    assert record["dataset"] == "cifar10" and record["method"] == "dense" and record["num_images"] == 6
    assert record["curve"][-1]["pool_size"] == 6 and 0.0 <= record["final_top1"] <= 100.0
    assert sorted(p.name for p in (state / "pool").iterdir()) == ["epoch00001.pt", "epoch00002.pt"]
