"""Bad input fails early, once and clearly: the CLI and the workflow config as a hurried user gives them.

Every case must exit non-zero with exactly one error line that names the problem, no
traceback, and no output file. The config cases must fail at ``snakemake -n``, before any job;
they run as parallel Snakemake subprocesses (marked ``dryrun``, a few seconds of CPU each).
"""

from __future__ import annotations

import copy
import json
import os
import stat
import subprocess
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from smi.cli import main
from smi.imageset import ImageSet, teacher_fingerprint
from smi.teachers import load_teacher, save_teacher
from tests.tiny import save_digits_teacher
from tests.workflow_cmd import snakemake_argv

REPO = Path(__file__).resolve().parents[1]
CI_CONFIG = yaml.safe_load((REPO / "config" / "ci.yaml").read_text())
TINY_KWARGS = dict(img_size=32, patch_size=4, embed_dim=32, depth=1, num_heads=2, mlp_ratio=2.0)
#: Parallel Snakemake dry runs (each mostly waits on imports).
DRY_RUN_WORKERS = 4
CUDA = torch.cuda.is_available()


# ------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """Two digits teachers of one shape with different weights, and a set inverted from the first."""
    root = tmp_path_factory.mktemp("bad-input")
    teacher = save_digits_teacher(root / "teacher.pt", TINY_KWARGS)
    other = load_teacher(root / "teacher.pt")
    with torch.no_grad():
        other.model.head.weight.add_(0.01)  # same shape and classes, other weights
    save_teacher(other, root / "other.pt", {"source": "test"})
    image_set = root / "set.pt"
    code = main(
        [
            "invert",
            "--teacher",
            str(teacher),
            "--teacher-id",
            "first",
            "--method",
            "dense",
            "--num-images",
            "4",
            "--batch-size",
            "4",
            "--iterations",
            "2",
            "--out",
            str(image_set),
            "--metrics",
            str(root / "set.json"),
            "--no-progress",
        ]
    )
    assert code == 0
    not_a_folder = root / "plain-file"
    not_a_folder.write_text("x")
    (root / "not-summary.csv").write_text("a,b\n1,2\n")
    return {"root": root, "teacher": teacher, "other": root / "other.pt", "set": image_set, "file": not_a_folder}


def one_error_line(err: str) -> str:
    """The single line of ``err``; fails on a traceback or on more than one line."""
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one error line, got {len(lines)}:\n{err}"
    return lines[0]


# ------------------------------------------------------------------------------------- CLI cases
def invert(files: dict[str, Path], *extra: str, out: str = "x.pt") -> list[str]:
    root = files["root"] / "out"
    return [
        "invert",
        "--teacher",
        str(files["teacher"]),
        "--method",
        "smi",
        "--num-images",
        "2",
        "--batch-size",
        "2",
        "--iterations",
        "4",
        "--schedule",
        "1",
        "2",
        "--out",
        str(root / out),
        "--metrics",
        str(root / "x.json"),
        "--no-progress",
        *extra,
    ]


def quantize(files: dict[str, Path], *extra: str, teacher: str = "teacher") -> list[str]:
    return [
        "quantize",
        "--teacher",
        str(files[teacher]),
        "--dataset-spec",
        '{"name": "digits"}',
        "--calib-set",
        str(files["set"]),
        "--calib-size",
        "4",
        "--out",
        str(files["root"] / "out" / "q.json"),
        "--no-progress",
        *extra,
    ]


def distill(files: dict[str, Path], *extra: str, teacher: str = "teacher") -> list[str]:
    student = json.dumps({"model_kwargs": {"embed_dim": 32, "depth": 1, "num_heads": 2}})
    return [
        "distill",
        "--teacher",
        str(files[teacher]),
        "--dataset-spec",
        '{"name": "digits"}',
        "--image-set",
        str(files["set"]),
        "--student-spec",
        student,
        "--recipe",
        '{"epochs": 1, "batch_size": 4}',
        "--out",
        str(files["root"] / "out" / "kd.json"),
        "--no-progress",
        *extra,
    ]


def external(files: dict[str, Path], command: str, *extra: str) -> list[str]:
    out = files["root"] / "out"
    return [
        "run-external",
        "--name",
        "ext",
        "--command",
        command,
        "--teacher",
        str(files["teacher"]),
        "--num-images",
        "2",
        "--out",
        str(out / "e.pt"),
        "--metrics",
        str(out / "e.json"),
        *extra,
    ]


def writes_foreign_set(files: dict[str, Path]) -> str:
    """A command that writes a valid set whose metadata records the other teacher's fingerprint."""
    other = load_teacher(files["other"])
    digest = teacher_fingerprint(other.model, other.model_name, other.metadata.get("model_kwargs"))
    script = files["root"] / "foreign.py"
    script.write_text(
        "import sys, torch\n"
        "torch.save({'images': torch.rand(2, 3, 32, 32), 'targets': torch.tensor([0, 1]),\n"
        f"            'metadata': {{'teacher': {{'model_name': 'vit_tiny_patch16_224', 'dataset': 'digits', "
        f"'fingerprint': '{digest}'}}}}}}, sys.argv[1])\n"
    )
    return f"{{python}} {script} {{out}}"


# (id, argv builder, expected text in the one error line)
CLI_CASES: list[tuple[str, Callable[[dict[str, Path]], list[str]], str]] = [
    (
        "num-images-zero",
        lambda f: invert(f, "--num-images", "0"),
        "argument --num-images: must be an integer >= 1, got 0",
    ),
    (
        "num-images-negative",
        lambda f: invert(f, "--num-images", "-3"),
        "argument --num-images: must be an integer >= 1, got -3",
    ),
    (
        "num-images-text",
        lambda f: invert(f, "--num-images", "many"),
        "argument --num-images: must be an integer, got 'many'",
    ),
    ("threads-zero", lambda f: invert(f, "--threads", "0"), "argument --threads: must be an integer >= 1, got 0"),
    ("threads-negative", lambda f: invert(f, "--threads", "-4"), "argument --threads: must be an integer >= 1, got -4"),
    ("batch-size-zero", lambda f: invert(f, "--batch-size", "0"), "argument --batch-size: must be an integer >= 1"),
    ("iterations-zero", lambda f: invert(f, "--iterations", "0"), "argument --iterations: must be an integer >= 1"),
    ("seed-negative", lambda f: invert(f, "--seed", "-1"), "argument --seed: must be an integer >= 0, got -1"),
    (
        "ratio-above-one",
        lambda f: invert(f, "--ratio", "1.5"),
        "argument --ratio: must be a number in (0.0, 1.0), got 1.5",
    ),
    ("ratio-nan", lambda f: invert(f, "--ratio", "nan"), "argument --ratio: must be a finite number"),
    (
        "schedule-fractional",
        lambda f: invert(f, "--schedule", "2.5", "3"),
        "argument --schedule: must be an integer, got '2.5'",
    ),
    (
        "schedule-beyond-iterations",
        lambda f: invert(f, "--iterations", "10", "--schedule", "50", "100"),
        "stopping schedule steps [50, 100] are at or beyond the run's 10 iterations",
    ),
    (
        "schedule-at-iterations",
        lambda f: invert(f, "--iterations", "4", "--schedule", "2", "4"),
        "stopping schedule steps [4] are at or beyond the run's 4 iterations",
    ),
    ("schedule-backwards", lambda f: invert(f, "--schedule", "3", "1"), "must be non-negative and strictly increasing"),
    (
        "method-params-list",
        lambda f: invert(f, "--method-params", "[1, 2]"),
        "argument --method-params: must be a JSON object",
    ),
    (
        "method-params-not-json",
        lambda f: invert(f, "--method-params", "{ratio: 0.3}"),
        "argument --method-params: not valid JSON",
    ),
    (
        "method-params-typo",
        lambda f: invert(f, "--method-params", '{"ratoi": 0.3}'),
        "unknown key(s) ['ratoi'] in parameters of method 'smi'",
    ),
    (
        "method-params-string-number",
        lambda f: invert(f, "--method-params", '{"ratio": "0.3"}'),
        "key 'ratio' in parameters of method 'smi' must be a number or a list of numbers, got '0.3'",
    ),
    (
        "inversion-config-string",
        lambda f: invert(f, "--inversion-config", '{"lr": "fast"}'),
        "key 'lr' in the inversion config must be a number, got 'fast'",
    ),
    ("unknown-method", lambda f: invert(f, "--method", "smj"), "unknown method 'smj'"),
    ("device-unknown", lambda f: invert(f, "--device", "gpu"), "unknown device 'gpu'; use cpu, cuda or cuda:N"),
    ("out-below-a-file", lambda f: invert(f, out="../plain-file/set.pt"), "is a file, not a folder"),
    ("out-is-a-folder", lambda f: invert(f, out=str(f["root"])), "is a folder; give a file path"),
    (
        "bench-repeats-zero",
        lambda f: ["bench-inversion", "--model", "vit_tiny_patch16_224", "--img-size", "32", "--repeats", "0"],
        "argument --repeats: must be an integer >= 1, got 0",
    ),
    (
        "bench-schedule-beyond",
        lambda f: [
            "bench-inversion",
            "--model",
            "vit_tiny_patch16_224",
            "--img-size",
            "32",
            "--batch-size",
            "1",
            "--iterations",
            "10",
            "--schedule",
            "50",
            "100",
        ],
        "stopping schedule steps [50, 100] are at or beyond the run's 10 iterations",
    ),
    (
        "quantize-w-bits-one",
        lambda f: quantize(f, "--w-bits", "1"),
        "argument --w-bits: must be an integer in 2..16, got 1",
    ),
    (
        "quantize-a-bits-high",
        lambda f: quantize(f, "--a-bits", "33"),
        "argument --a-bits: must be an integer in 2..16, got 33",
    ),
    (
        "quantize-calib-size-zero",
        lambda f: quantize(f, "--calib-size", "0"),
        "argument --calib-size: must be an integer >= 1",
    ),
    ("quantize-bits-malformed", lambda f: quantize(f, "--bits", "4/x"), "--bits value '4/x' is not W/A"),
    ("quantize-foreign-set", lambda f: quantize(f, teacher="other"), "was made from teacher 'first'"),
    ("distill-foreign-set", lambda f: distill(f, teacher="other"), "was made from teacher 'first'"),
    (
        "distill-budget-negative",
        lambda f: distill(f, "--budget-gflops", "-1"),
        "argument --budget-gflops: must be a number > 0.0",
    ),
    (
        "distill-num-images-zero",
        lambda f: distill(f, "--num-images", "0"),
        "argument --num-images: must be an integer >= 1",
    ),
    ("distill-recipe-list", lambda f: distill(f, "--recipe", "[]"), "argument --recipe: must be a JSON object"),
    (
        "distill-recipe-string-number",
        lambda f: distill(f, "--recipe", '{"epochs": "2"}'),
        "key 'epochs' in the distillation recipe must be an integer, got '2'",
    ),
    (
        "external-timeout-zero",
        lambda f: external(f, "true {out}", "--timeout", "0"),
        "argument --timeout: must be a number > 0.0",
    ),
    (
        "external-timeout-hit",
        lambda f: external(f, "sleep 30 # {out}", "--timeout", "1"),
        "external method 'ext' did not finish within 1 s and was stopped; raise --timeout",
    ),
    (
        "external-foreign-set",
        lambda f: external(f, writes_foreign_set(f)),
        "written by the external command was made from teacher",
    ),
    (
        "compare-not-a-summary",
        lambda f: ["compare", str(f["root"] / "not-summary.csv"), str(f["root"] / "not-summary.csv")],
        "is not a summary table of `smi aggregate`",
    ),
    ("compare-missing", lambda f: ["compare", str(f["root"] / "nope"), str(f["root"] / "nope")], "does not exist"),
    (
        "compare-atol-negative",
        lambda f: ["compare", "a", "b", "--atol", "-1"],
        "argument --atol: must be a number >= 0.0",
    ),
    (
        "tables-fraction-zero",
        lambda f: ["tables", "--summary", "s.csv", "--out-dir", str(f["root"] / "out" / "t"), "--target-fraction", "0"],
        "argument --target-fraction: must be a number in (0.0, 1.0]",
    ),
    (
        "figures-grid-classes-zero",
        lambda f: ["figures", "--summary", "s.csv", "--out-dir", str(f["root"] / "out" / "f"), "--grid-classes", "0"],
        "argument --grid-classes: must be an integer >= 1",
    ),
    (
        "aggregate-out-dir-unwritable",
        lambda f: ["aggregate", "--root", str(f["root"]), "--out", str(f["file"] / "s.csv")],
        "is a file, not a folder",
    ),
    (
        "foreground-ratio-zero",
        lambda f: [
            "foreground",
            "--teacher",
            str(f["teacher"]),
            "--ratio",
            "0",
            "--out",
            str(f["root"] / "out" / "fg.json"),
        ],
        "argument --ratio: must be a number in (0.0, 1.0)",
    ),
    (
        "eval-teacher-batch-zero",
        lambda f: [
            "eval-teacher",
            "--teacher",
            str(f["teacher"]),
            "--batch-size",
            "0",
            "--out",
            str(f["root"] / "out" / "ev.json"),
        ],
        "argument --batch-size: must be an integer >= 1",
    ),
    (
        "train-teacher-seed-negative",
        lambda f: [
            "train-teacher",
            "--teacher-spec",
            "{}",
            "--dataset-spec",
            "{}",
            "--seed",
            "-2",
            "--out",
            "t.pt",
            "--metrics",
            "t.json",
        ],
        "argument --seed: must be an integer >= 0",
    ),
    (
        "train-teacher-threads-zero",
        lambda f: [
            "train-teacher",
            "--teacher-spec",
            "{}",
            "--dataset-spec",
            "{}",
            "--threads",
            "0",
            "--out",
            "t.pt",
            "--metrics",
            "t.json",
        ],
        "argument --threads: must be an integer >= 1",
    ),
]
if not CUDA:
    CLI_CASES.append(
        ("device-cuda-without-gpu", lambda f: invert(f, "--device", "cuda"), "CUDA is not available; use --device cpu")
    )


@pytest.mark.parametrize("case", CLI_CASES, ids=[c[0] for c in CLI_CASES])
def test_cli_bad_input_is_one_line_and_writes_nothing(case, files, capsys) -> None:
    _, build, expected = case
    out = files["root"] / "out"
    before = sorted(p.name for p in out.rglob("*")) if out.exists() else []
    code = main(build(files))
    err = capsys.readouterr().err
    assert code not in (0, None)
    line = one_error_line(err)
    assert expected in line, line
    after = sorted(p.name for p in out.rglob("*")) if out.exists() else []
    assert after == before, f"files were written: {sorted(set(after) - set(before))}"


def test_ctrl_c_is_one_line_saying_nothing_was_written(files, capsys, monkeypatch) -> None:
    import smi.cli.invert as invert_cli

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(invert_cli, "run", interrupted)
    code = main(invert(files))
    line = one_error_line(capsys.readouterr().err)
    assert code == 130 and "interrupted; nothing was written that is not complete" in line
    assert not (files["root"] / "out" / "x.pt").exists()


# ------------------------------------------------------------------------------------- teacher identity
def test_foreign_set_is_refused_naming_both_teachers_and_allowed_on_request(files, capsys) -> None:
    first, other = load_teacher(files["teacher"]), load_teacher(files["other"])
    assert first.model.head.weight.shape == other.model.head.weight.shape  # same shape: only the identity tells
    image_set = ImageSet.load(files["set"])
    image_set.check_compatible(other.num_classes, other.input_size, (8, 8))  # the shape check alone accepts it
    assert image_set.metadata["teacher"]["fingerprint"] == teacher_fingerprint(
        first.model, first.model_name, TINY_KWARGS
    )

    assert main(quantize(files, "--teacher-id", "second", teacher="other")) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "teacher 'first'" in line and "teacher 'second'" in line and "--allow-foreign-set" in line

    out = files["root"] / "out" / "q.json"
    assert main(quantize(files, "--teacher-id", "second", "--allow-foreign-set", teacher="other")) == 0
    record = json.loads(out.read_text())
    assert record["allow_foreign_set"] is True and record["set_teacher"] == "foreign"
    out.unlink()
    assert main(quantize(files)) == 0
    record = json.loads(out.read_text())
    assert record["allow_foreign_set"] is False and record["set_teacher"] == "same"
    out.unlink()


def test_fingerprint_is_deterministic_and_sees_one_weight() -> None:
    from tests.tiny import make_tiny_vit

    a, b = make_tiny_vit(), make_tiny_vit()
    assert teacher_fingerprint(a, "m", {"x": 1}) == teacher_fingerprint(b, "m", {"x": 1})
    assert teacher_fingerprint(a, "m", {"x": 1}) != teacher_fingerprint(a, "m", {"x": 2})
    with torch.no_grad():
        b.blocks[0].attn.qkv.weight[0, 0] += 1e-6
    assert teacher_fingerprint(a, "m", {}) != teacher_fingerprint(b, "m", {})


# ------------------------------------------------------------------------------------- permissions
@pytest.mark.parametrize("umask,mode", [(0o002, 0o664), (0o077, 0o600)])
def test_outputs_follow_the_umask(tmp_path, umask: int, mode: int) -> None:
    from smi.io import torch_save, write_json

    old = os.umask(umask)
    try:
        write_json(tmp_path / "a.json", {"x": 1})
        torch_save({"x": torch.zeros(1)}, tmp_path / "b.pt")
    finally:
        os.umask(old)
    for name in ("a.json", "b.pt"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == mode, name


def test_cli_outputs_are_group_readable_under_umask_002(files) -> None:
    out = files["root"] / "umask"
    old = os.umask(0o002)
    try:
        code = main(
            [
                "invert",
                "--teacher",
                str(files["teacher"]),
                "--method",
                "dense",
                "--num-images",
                "2",
                "--batch-size",
                "2",
                "--iterations",
                "1",
                "--out",
                str(out / "s.pt"),
                "--metrics",
                str(out / "s.json"),
                "--grid",
                str(out / "s.png"),
                "--no-progress",
            ]
        )
    finally:
        os.umask(old)
    assert code == 0
    for path in out.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) & 0o044 == 0o044, path


# ------------------------------------------------------------------------------------- workflow config
def _set(config: dict[str, Any], path: str, value: Any) -> None:
    keys = path.split("/")
    node = config
    for key in keys[:-1]:
        node = node[int(key)] if isinstance(node, list) else node[key]
    last = keys[-1]
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value


def _edits(*pairs: tuple[str, Any]) -> Callable[[dict[str, Any], Path], None]:
    def apply(config: dict[str, Any], tmp: Path) -> None:
        for path, value in pairs:
            _set(config, path, value(tmp) if callable(value) else value)

    return apply


def _rename_top(config: dict[str, Any], tmp: Path) -> None:
    config["experiment"] = config.pop("experiments")


def _folder_dataset(root: Callable[[Path], str]) -> Callable[[dict[str, Any], Path], None]:
    def apply(config: dict[str, Any], tmp: Path) -> None:
        config["datasets"]["pics"] = {"name": "imagefolder", "root": root(tmp)}
        config["experiments"][1]["dataset"] = "pics"
        config["experiments"][1]["foreground"] = False

    return apply


def _empty_folder(tmp: Path) -> str:
    (tmp / "pics").mkdir(exist_ok=True)
    return str(tmp / "pics")


# (id, edit of config/ci.yaml, expected text in the one error line)
CONFIG_CASES: list[tuple[str, Callable[[dict[str, Any], Path], None], str]] = [
    ("top-level-typo", _rename_top, "experiment: unknown key(s); allowed keys here are datasets, device"),
    (
        "nested-key-typo",
        _edits(("inversion/iteration", 10)),
        "inversion.iteration: unknown key(s); allowed keys here are batch_size",
    ),
    (
        "string-for-number",
        _edits(("inversion/iterations", "20")),
        "inversion.iterations: must be of type integer, got '20'",
    ),
    ("threads-zero", _edits(("threads", 0)), "threads: must be >= 1, got 0"),
    ("seed-negative", _edits(("experiments/0/seeds", [-1])), "experiments[0].seeds[0]: must be >= 0, got -1"),
    ("bits-too-low", _edits(("quantization/bits", [[1, 8]])), "quantization.bits[0][0]: must be >= 2, got 1"),
    ("bits-too-high", _edits(("quantization/bits", [[8, 33]])), "quantization.bits[0][1]: must be <= 16, got 33"),
    ("device-misspelled", _edits(("device", "gpu")), "device: 'gpu' does not match the allowed form"),
    (
        "recipe-string",
        _edits(("distillation/recipe/epochs", "2")),
        "distillation.recipe.epochs: must be of type integer",
    ),
    ("undefined-teacher-id", _edits(("experiments/0/teacher", "vit-s")), "teacher='vit-s'): unknown teacher id"),
    (
        "method-param-typo",
        _edits(("methods/smi/params", {"iterations": [2, 4], "ratoi": 0.3})),
        "methods.smi: unknown key(s) ['ratoi'] in parameters of method 'smi'",
    ),
    (
        "method-param-string",
        _edits(("methods/smi/params", {"iterations": [2, 4], "ratio": "0.3"})),
        "methods.smi: key 'ratio' in parameters of method 'smi' must be a number",
    ),
    (
        "ratio-above-one",
        _edits(("methods/smi/params", {"iterations": [2, 4], "ratio": 1.5})),
        "methods.smi: stopping ratios [1.5, 1.5] are outside (0, 1)",
    ),
    (
        "schedule-backwards",
        _edits(("methods/smi/params", {"iterations": [4, 2], "ratio": 0.3})),
        "methods.smi: stopping schedule iterations [4, 2] must be non-negative and strictly increasing",
    ),
    (
        "schedule-fractional",
        _edits(("methods/smi/params", {"iterations": [2.5, 4], "ratio": 0.3})),
        "methods.smi: key 'iterations' in parameters of method 'smi' must be a list of integers",
    ),
    (
        "schedule-beyond-iterations",
        _edits(("inversion/iterations", 6)),
        "methods.smi.params.iterations: stopping schedule steps [6, 8] are at or beyond the run's 6 iterations",
    ),
    ("unknown-registered-method", _edits(("methods/smi", {"method": "smj"})), "methods.smi: unknown method 'smj'"),
    (
        "pri-division-beyond-iterations",
        _edits(("methods/pri/params", {"division": 30})),
        "methods.pri.params.division: 30 images per trajectory need at least 30 iterations",
    ),
    (
        "inversion-option-typo",
        _edits(("inversion/options", {"flipp": False})),
        "inversion.options: unknown key(s) ['flipp'] in the inversion config",
    ),
    ("unknown-dataset-name", _edits(("datasets/digits/name", "digitz")), "datasets.digits: unknown dataset 'digitz'"),
    (
        "dataset-option-typo",
        _edits(("datasets/digits/options", {"test_fractoin": 0.2})),
        "datasets.digits: unknown key(s) ['test_fractoin'] in options of dataset 'digits'",
    ),
    ("dataset-root-missing", _folder_dataset(lambda tmp: str(tmp / "no-such-folder")), "datasets.pics.root: folder"),
    ("dataset-root-wrong-layout", _folder_dataset(_empty_folder), "datasets.pics.root:"),
    (
        "unknown-model",
        _edits(("teachers/vit-xs/model", "vit_tiny_patch17_224")),
        "teachers.vit-xs.model: unknown timm model 'vit_tiny_patch17_224'",
    ),
    (
        "not-a-vit",
        _edits(("teachers/vit-xs/model", "resnet18"), ("teachers/vit-xs/model_kwargs", {})),
        "teachers.vit-xs.model: model of type ResNet is not a timm VisionTransformer",
    ),
    (
        "img-size-not-multiple-of-patch",
        _edits(("teachers/vit-xs/model_kwargs/img_size", 18)),
        "teachers.vit-xs.model: image size (18, 18) is not divisible by the patch size (4, 4)",
    ),
    (
        "teacher-recipe-typo",
        _edits(("teachers/vit-xs/recipe", {"epoch": 2})),
        "teachers.vit-xs: unknown key(s) ['epoch'] in teacher recipe",
    ),
    (
        "checkpoint-missing",
        _edits(
            ("teachers/vit-xs/source", "checkpoint"),
            ("teachers/vit-xs/recipe", None),
            ("teachers/vit-xs/checkpoint", lambda tmp: str(tmp / "missing.pth")),
        ),
        "teachers.vit-xs.checkpoint: file",
    ),
    (
        "student-unknown-model",
        _edits(("distillation/students/vit-student/model", "vit_teeny")),
        "distillation.students.vit-student: unknown timm model 'vit_teeny'",
    ),
    (
        "calib-size-above-images",
        _edits(("quantization/calib_size", 64)),
        "quantization.calib_size: 64 calibration images but experiments[0] makes only 16 per method",
    ),
    (
        "external-placeholder-typo",
        _edits(("external_methods/toy-external/command", "{python} x.py --out {output}")),
        "external_methods.toy-external.command: command template uses unknown placeholder(s) ['output']",
    ),
]
if not CUDA:
    CONFIG_CASES.append(
        (
            "device-cuda-without-gpu",
            _edits(("device", "cuda")),
            "device: 'cuda' but CUDA is not available on this machine",
        )
    )


def _dry_run(
    case: tuple[str, Callable[[dict[str, Any], Path], None], str], base: Path
) -> tuple[subprocess.CompletedProcess[str], Path]:
    name, edit, _ = case
    workdir = base / name
    workdir.mkdir()
    config = copy.deepcopy(CI_CONFIG)
    edit(config, workdir)
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    env.pop("SMI_SKIP_MACHINE_CHECKS", None)
    proc = subprocess.run(
        snakemake_argv(workdir, "-n", "--configfile", str(path)),
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    return proc, workdir


@pytest.fixture(scope="module")
def dry_runs(tmp_path_factory) -> dict[str, tuple[subprocess.CompletedProcess[str], Path]]:
    """Every config case's ``snakemake -n``, run in parallel once."""
    base = tmp_path_factory.mktemp("dry-runs")
    with ThreadPoolExecutor(DRY_RUN_WORKERS) as pool:
        results = pool.map(lambda case: _dry_run(case, base), CONFIG_CASES)
        return {case[0]: result for case, result in zip(CONFIG_CASES, results)}


#: Snakemake's own notes, which are not errors: the workflow profile it loads, and (when a config
#: lacks 'experiments') the embedded default config that the Snakefile loads beneath it.
SNAKEMAKE_NOTES = ("Using workflow specific profile", "Config file ")


def snakemake_error_line(proc: subprocess.CompletedProcess[str]) -> str:
    """The one line of a failed dry run (Snakemake's notes aside)."""
    lines = (proc.stdout + "\n" + proc.stderr).splitlines()
    return one_error_line("\n".join(line for line in lines if not line.startswith(SNAKEMAKE_NOTES)))


@pytest.mark.dryrun
@pytest.mark.parametrize("case", CONFIG_CASES, ids=[c[0] for c in CONFIG_CASES])
def test_config_bad_input_fails_the_dry_run_in_one_line(case, dry_runs) -> None:
    name, _, expected = case
    proc, workdir = dry_runs[name]
    assert proc.returncode != 0
    line = snakemake_error_line(proc)
    assert line.startswith("config error: ") and expected in line, line
    assert not (workdir / "results").exists()


def test_ci_config_passes_the_checks() -> None:
    from snakemake.utils import validate

    from smi.validate import check_workflow_config

    config = copy.deepcopy(CI_CONFIG)

    validate(config, str(REPO / "workflow" / "schemas" / "config.schema.yaml"))
    check_workflow_config(config, REPO, check_cuda=True)


def test_yaml_syntax_error_names_the_line(tmp_path, capsys) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("run: ci\ndevice: cpu\ndatasets:\n  digits: {name: digits\nteachers: {}\n")
    assert main(["check-config", str(path)]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "bad.yaml, line 5" in line and "YAML syntax error" in line, line


def test_check_config_runs_the_workflow_checks(tmp_path, capsys) -> None:
    config = copy.deepcopy(CI_CONFIG)
    config["methods"]["smi"]["params"]["iterations"] = [2, 40]
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["check-config", str(path)]) == 2
    assert "methods.smi.params.iterations: stopping schedule steps [40]" in one_error_line(capsys.readouterr().err)


@pytest.mark.parametrize(
    "argv,env,local",
    [
        (["snakemake", "-n"], {}, True),
        (["snakemake", "--executor", "slurm"], {}, False),
        (["snakemake", "-e", "local"], {}, True),
        (["snakemake", "--profile", str(REPO / "profiles" / "slurm")], {}, False),
        (["snakemake"], {"SNAKEMAKE_PROFILE": str(REPO / "profiles" / "slurm")}, False),
        (["snakemake", "--profile", str(REPO / "profiles" / "default")], {}, True),
    ],
)
def test_cuda_is_checked_only_when_jobs_run_here(argv, env, local) -> None:
    from smi.validate import jobs_run_here

    assert jobs_run_here(argv, env) is local
