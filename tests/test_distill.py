"""Tests of the knowledge-transfer evaluator (smi.distill, smi distill)."""

from __future__ import annotations

import json

import pytest
import torch

from smi.cli import main
from smi.distill import DistillRecipe, PatchAugment, PatchErase, StudentSpec, distill, images_for_budget, kd_loss
from smi.errors import SMIError
from smi.imageset import ImageSet
from tests.test_quant import CLASSES, GRID, PATCH, dense_set, make_images, trained  # noqa: F401 (fixture)

STUDENT = StudentSpec(model_kwargs={"embed_dim": 32, "depth": 1, "num_heads": 2, "mlp_ratio": 2.0})
RECIPE = DistillRecipe(epochs=3, batch_size=16, lr=3e-3, warmup_epochs=0, eval_batch_size=300)
CHANCE = 100.0 / CLASSES


def sparse_set(images: torch.Tensor, labels: torch.Tensor, fill: float, seed: int = 5) -> ImageSet:
    """Images with half their patches stopped (equal counts, as SMI produces); stopped pixels = fill."""
    gen = torch.Generator().manual_seed(seed)
    keep = torch.rand(len(images), GRID[0] * GRID[1], generator=gen).argsort(dim=1)[:, : GRID[0] * GRID[1] // 2]
    masks = torch.zeros(len(images), GRID[0] * GRID[1], dtype=torch.bool).scatter_(1, keep, True).view(-1, *GRID)
    pixel = masks.repeat_interleave(PATCH, 1).repeat_interleave(PATCH, 2)[:, None]
    return ImageSet(torch.where(pixel, images, torch.full((), fill)), masks, labels, {"method": "sparse"})


# ---------------------------------------------------------------------------- pieces
def test_kd_loss_is_scaled_kl() -> None:
    torch.manual_seed(0)
    s, t = torch.randn(8, 5), torch.randn(8, 5)
    assert float(kd_loss(t, t, 20.0)) == pytest.approx(0.0, abs=1e-6)
    p_t, log_p_s = (t / 4).softmax(1), (s / 4).log_softmax(1)
    expected = (p_t * (p_t.log() - log_p_s)).sum(1).mean() * 16
    torch.testing.assert_close(kd_loss(s, t, 4.0), expected)


def test_patch_augment_keeps_sparse_images_sparse() -> None:
    images, labels = make_images(16, seed=0)
    sparse = sparse_set(images, labels, fill=0.0)
    augment = PatchAugment.from_name("patch_shift_flip", (PATCH, PATCH), max_shift=1)
    out, masks = augment(sparse.images, sparse.keep_masks, torch.Generator().manual_seed(0))
    assert torch.equal(masks.flatten(1).sum(1), sparse.keep_masks.flatten(1).sum(1))
    pixel = masks.repeat_interleave(PATCH, 1).repeat_interleave(PATCH, 2)[:, None].expand_as(out)
    assert bool((out[~pixel] == 0).all()), "a stopped patch received content"
    assert not torch.equal(out, sparse.images), "the augmentation did nothing"

    # Kept patches are moved whole: their multiset of patch sums is unchanged per image.
    def patch_sums(x: torch.Tensor, m: torch.Tensor) -> list[torch.Tensor]:
        sums = x.unfold(2, PATCH, PATCH).unfold(3, PATCH, PATCH).sum((1, 4, 5)).flatten(1)
        return [row[mask.flatten()].sort().values for row, mask in zip(sums, m)]

    for a, b in zip(patch_sums(out, masks), patch_sums(sparse.images, sparse.keep_masks)):
        torch.testing.assert_close(a, b)
    again = augment(sparse.images, sparse.keep_masks, torch.Generator().manual_seed(0))
    assert torch.equal(again[0], out) and torch.equal(again[1], masks)


def test_patch_erase_blackens_whole_kept_patches_only() -> None:
    images, labels = make_images(32, seed=0)
    # No kept pixel is black by chance; stopped pixels hold 0.5 so that touching one shows.
    sparse = sparse_set(images.clamp(0.01, 1), labels, fill=0.5)
    erase = PatchErase((PATCH, PATCH), max_fraction=0.9)
    out = erase(sparse.images, sparse.keep_masks, torch.Generator().manual_seed(3))
    blocks = out.unfold(2, PATCH, PATCH).unfold(3, PATCH, PATCH)  # (B, C, gh, gw, ph, pw)
    black = (blocks == 0).all(dim=(1, 4, 5))
    partly_black = (blocks == 0).any(dim=(1, 4, 5))
    assert torch.equal(black, partly_black), "a patch was erased only in part"
    stopped = ~sparse.keep_masks
    assert bool((blocks.permute(0, 2, 3, 1, 4, 5)[stopped] == 0.5).all()), "a stopped patch was touched"
    erased = black & sparse.keep_masks
    assert 0 < int(erased.sum()) < int(sparse.keep_masks.sum()), "nothing or everything was erased"
    kept = sparse.images.unfold(2, PATCH, PATCH).unfold(3, PATCH, PATCH)
    untouched = (sparse.keep_masks & ~black)[:, None, :, :, None, None].expand_as(blocks)
    assert torch.equal(blocks[untouched], kept[untouched]), "a kept, non-erased patch changed"
    again = erase(sparse.images, sparse.keep_masks, torch.Generator().manual_seed(3))
    other = erase(sparse.images, sparse.keep_masks, torch.Generator().manual_seed(4))
    assert torch.equal(again, out) and not torch.equal(other, out)
    assert PatchErase((PATCH, PATCH), 0.0)(sparse.images, sparse.keep_masks, torch.Generator()) is sparse.images
    with pytest.raises(SMIError, match="erase"):
        PatchErase((PATCH, PATCH), 1.0)


def test_teacher_labels_the_erased_input(trained, monkeypatch) -> None:
    """The KD target of a step is the teacher's output on that step's augmented, erased batch."""
    import smi.distill.train as train
    from smi.sparse_vit import TokenSubsetViT

    teacher, images, labels, test_set = trained
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []
    targets: list[torch.Tensor] = []

    class Recording(PatchErase):
        def __call__(self, batch, masks, generator):
            out = super().__call__(batch, masks, generator)
            seen.append((out.clone(), masks.clone()))
            return out

    def recording_loss(student_logits, teacher_logits, temperature):
        targets.append(teacher_logits.detach().clone())
        return kd_loss(student_logits, teacher_logits, temperature)

    monkeypatch.setattr(train, "PatchErase", Recording)
    monkeypatch.setattr(train, "kd_loss", recording_loss)
    recipe = DistillRecipe(epochs=1, batch_size=16, eval_batch_size=300, erase=0.75)
    distill(teacher, sparse_set(images[:32], labels[:32], 0.0), STUDENT, recipe, test_set, 0, "cpu", progress=False)
    assert len(seen) == len(targets) == 2
    view = TokenSubsetViT(teacher.model)
    for (batch, masks), target in zip(seen, targets):
        assert bool((batch == 0).any()), "nothing was erased"
        with torch.no_grad():
            torch.testing.assert_close(target, view.forward_masked(teacher.normalize(batch), masks))


def test_images_for_budget() -> None:
    assert images_for_budget(100.0, 1.0, 500) == 100
    assert images_for_budget(100.0, 0.25, 500) == 400  # a 4x cheaper method gets 4x the images
    assert images_for_budget(3.0, 1.0 / 3.0, 9) == 9
    with pytest.raises(SMIError, match="holds only"):
        images_for_budget(100.0, 0.1, 500)
    with pytest.raises(SMIError, match="buys no image"):
        images_for_budget(0.5, 1.0, 10)
    with pytest.raises(SMIError, match="positive"):
        images_for_budget(10.0, 0.0, 10)


def test_bad_specs_rejected(trained) -> None:
    teacher, images, labels, test_set = trained
    with pytest.raises(SMIError, match="checkpoint"):
        StudentSpec(init="checkpoint")
    with pytest.raises(SMIError, match="augment"):
        DistillRecipe(augment="mixup")
    for bad in (-0.1, 1.0):
        with pytest.raises(SMIError, match="erase"):
            DistillRecipe(erase=bad)
    with pytest.raises(SMIError, match="eval_every"):
        DistillRecipe(eval_every=0)
    wrong_grid = StudentSpec(model_kwargs={"embed_dim": 32, "depth": 1, "num_heads": 2, "patch_size": 8})
    with pytest.raises(SMIError, match="patch grid"):
        distill(
            teacher, dense_set(images[:32], labels[:32], "real"), wrong_grid, RECIPE, test_set, 0, "cpu", progress=False
        )
    other = ImageSet(torch.rand(8, 3, 32, 32), torch.ones(8, 8, 8, dtype=torch.bool), torch.zeros(8, dtype=torch.long))
    with pytest.raises(SMIError, match="another teacher"):
        distill(teacher, other, STUDENT, RECIPE, test_set, 0, "cpu", progress=False)


# ---------------------------------------------------------------------------- training
def test_distillation_on_real_images_learns(trained) -> None:
    teacher, images, labels, test_set = trained
    real = dense_set(images[:192], labels[:192], "real")
    result = distill(teacher, real, STUDENT, RECIPE, test_set, seed=0, device="cpu", progress=False)
    assert [c["epoch"] for c in result.curve] == [1, 2, 3]
    assert result.final == result.curve[-1] and result.num_images == 192
    assert result.curve[-1]["train_loss"] < result.curve[0]["train_loss"]
    assert result.final["test_top1"] > 2 * CHANCE, result.curve
    assert result.teacher_accuracy["top1"] > 80.0


def test_evaluation_every_k_epochs_and_after_the_last(trained) -> None:
    teacher, images, labels, test_set = trained
    recipe = DistillRecipe(epochs=5, batch_size=32, warmup_epochs=0, eval_batch_size=300, eval_every=2)
    result = distill(
        teacher, dense_set(images[:32], labels[:32], "real"), STUDENT, recipe, test_set, 0, "cpu", progress=False
    )
    assert [c["epoch"] for c in result.curve] == [2, 4, 5]
    assert result.curve[0]["wall_time_s"] < result.curve[-1]["wall_time_s"]


def test_stopped_patches_never_reach_teacher_or_student(trained) -> None:
    """Training on sparse images must not depend on what the stopped patches hold, erasing on.

    Two runs with the same seed must also match exactly (determinism), which this implies.
    """
    teacher, images, labels, test_set = trained
    recipe = DistillRecipe(epochs=1, batch_size=32, eval_batch_size=300, num_images=64, erase=0.75)
    runs = [
        distill(
            teacher, sparse_set(images[:64], labels[:64], fill), STUDENT, recipe, test_set, 0, "cpu", progress=False
        )
        for fill in (0.0, 1.0)
    ]
    assert runs[0].curve[0]["train_loss"] == runs[1].curve[0]["train_loss"]
    for a, b in zip(runs[0].student.parameters(), runs[1].student.parameters()):
        assert torch.equal(a, b)


def test_linear_protocol_trains_only_the_new_head(trained, tmp_path) -> None:
    teacher, images, labels, test_set = trained
    from smi.teachers import save_teacher

    path = tmp_path / "pretrained.pt"
    save_teacher(teacher, path, {"source": "test"})
    spec = StudentSpec(
        model="vit_tiny_patch16_224",
        model_kwargs={"embed_dim": 32, "depth": 2, "num_heads": 2, "mlp_ratio": 2.0},
        init="checkpoint",
        checkpoint=str(path),
        train="linear",
    )
    recipe = DistillRecipe(epochs=1, batch_size=32, eval_batch_size=300)
    result = distill(
        teacher, dense_set(images[:64], labels[:64], "real"), spec, recipe, test_set, 0, "cpu", progress=False
    )
    trained_state, reference = result.student.state_dict(), teacher.model.state_dict()
    for key, value in trained_state.items():
        if key.startswith("head."):
            assert not torch.equal(value, reference[key]), "the new head was not re-initialised or trained"
        else:
            assert torch.equal(value, reference[key]), f"{key} changed under linear training"


# ---------------------------------------------------------------------------- CLI
def test_cli_writes_metrics_with_correlated_split_and_budget(trained, tmp_path, monkeypatch) -> None:
    teacher, images, labels, test_set = trained
    import smi.cli.distill as cli

    class Spec:
        name = "shapes"

    monkeypatch.setattr(cli, "load_teacher", lambda path, device: teacher)
    monkeypatch.setattr(cli, "load_split", lambda values, split, t: (Spec, test_set))
    image_set = tmp_path / "set.pt"
    dense_set(images[:100], labels[:100], "dense").save(image_set)
    metrics = tmp_path / "inv.json"
    metrics.write_text(json.dumps({"gflops_per_image": 0.5}))
    out = tmp_path / "kd.json"
    argv = [
        "distill",
        "--teacher",
        "t.pt",
        "--dataset-spec",
        '{"name": "shapes"}',
        "--image-set",
        str(image_set),
        "--student-spec",
        json.dumps({"model_kwargs": STUDENT.model_kwargs}),
        "--student-id",
        "tiny",
        "--recipe",
        '{"epochs": 2, "batch_size": 32}',
        "--budget-gflops",
        "40",
        "--inversion-metrics",
        str(metrics),
        "--out",
        str(out),
        "--no-progress",
    ]
    assert main(argv) == 0
    record = json.loads(out.read_text())
    for key in (
        "kind",
        "dataset",
        "teacher",
        "model_name",
        "method",
        "student",
        "seed",
        "epochs",
        "num_images",
        "final_top1",
        "final_top5",
        "teacher_top1",
        "curve",
        "final_top1_correlated",
        "decorrelation_gap",
        "provenance",
    ):
        assert key in record, key
    assert record["kind"] == "distillation" and record["method"] == "dense" and record["student"] == "tiny"
    assert record["num_images"] == 80  # 40 GFLOPs at 0.5 GFLOPs per image
    assert record["final_top1"] == record["curve"][-1]["test_top1"] and len(record["curve"]) == 2
    assert set(record["curve"][0]) >= {"epoch", "train_loss", "test_top1", "wall_time_s"}
    assert record["decorrelation_gap"] == pytest.approx(record["final_top1_correlated"] - record["final_top1"])
    too_big = argv[:-5] + ["--budget-gflops", "400", "--out", str(tmp_path / "x.json"), "--no-progress"]
    assert main(too_big) == 2 and not (tmp_path / "x.json").exists()


def test_teacher_accuracy_is_read_from_the_teacher_file_when_it_was_taken_on_the_same_split() -> None:
    """Every student of a teacher reports the same teacher accuracy: the file's record, not a new pass."""
    from smi.cli.distill import recorded_teacher_accuracy
    from smi.data import DatasetSpec, load_dataset
    from smi.quant.accuracy import evaluate_logits
    from smi.teachers import build_teacher
    from tests.test_teachers import DIGITS, SPEC

    teacher, _ = build_teacher(SPEC, DIGITS, "cpu", seed=0, progress=False)
    test_set = load_dataset(DIGITS, "test", teacher.data_config)
    measured = evaluate_logits(teacher.model, test_set, DistillRecipe().eval_batch_size, "cpu", progress=False)
    recorded = recorded_teacher_accuracy(teacher, DIGITS)
    assert recorded == {"top1": measured["top1"], "top5": measured["top5"]}
    other_split = DatasetSpec("digits", {"test_fraction": 0.3})
    assert recorded_teacher_accuracy(teacher, other_split) is None
    teacher.metadata.pop("top1")
    assert recorded_teacher_accuracy(teacher, DIGITS) is None


def test_known_teacher_accuracy_is_not_measured_again(trained) -> None:
    teacher, images, labels, test_set = trained
    recipe = DistillRecipe(epochs=1, batch_size=32, warmup_epochs=0, eval_batch_size=300)
    known = {"top1": 12.5, "top5": 50.0}
    result = distill(
        teacher,
        dense_set(images[:32], labels[:32], "real"),
        STUDENT,
        recipe,
        test_set,
        0,
        "cpu",
        progress=False,
        teacher_accuracy=known,
    )
    assert result.teacher_accuracy == known
