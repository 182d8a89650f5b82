"""``smi run-external``: an external command's image set becomes a suite method."""

from __future__ import annotations

import json
import os
import shlex
from pathlib import Path

import pytest
import torch

from smi.cli import main
from smi.cli.run_external import render_command
from smi.errors import SMIError
from smi.imageset import ImageSet
from tests.tiny import save_digits_teacher
from tests.workflow_cmd import REPO, snakemake_argv

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "external_baseline"
TINY_KWARGS = dict(img_size=32, patch_size=4, embed_dim=32, depth=1, num_heads=2, mlp_ratio=2.0)
BLOBS = (
    f"{{python}} {shlex.quote(str(EXAMPLES / 'toy_blobs.py'))} --num-images {{num_images}} "
    "--num-classes {num_classes} --img-size {img_size} --seed {seed} --out {out}"
)


@pytest.fixture
def teacher_file(tmp_path) -> Path:
    return save_digits_teacher(tmp_path / "teacher.pt", TINY_KWARGS)


def run_external(
    tmp_path: Path, teacher_file: Path, command: str, name: str = "toy-external", num_images: int = 6
) -> int:
    return main(
        [
            "run-external",
            "--name",
            name,
            "--command",
            command,
            "--teacher",
            str(teacher_file),
            "--teacher-id",
            "tiny",
            "--num-images",
            str(num_images),
            "--seed",
            "3",
            "--out",
            str(tmp_path / "out" / "set.pt"),
            "--metrics",
            str(tmp_path / "out" / "set.json"),
            "--grid",
            str(tmp_path / "out" / "set.png"),
        ]
    )


def test_toy_blobs_end_to_end(tmp_path, teacher_file) -> None:
    assert run_external(tmp_path, teacher_file, BLOBS) == 0
    image_set = ImageSet.load(tmp_path / "out" / "set.pt")
    image_set.check_compatible(10, (3, 32, 32), (8, 8))
    assert len(image_set) == 6 and bool(image_set.keep_masks.all())  # masks omitted by the script: dense
    assert float(image_set.images.min()) >= 0 and float(image_set.images.max()) <= 1
    meta = image_set.metadata
    assert meta["method"] == "toy-external" and meta["teacher_id"] == "tiny" and meta["seed"] == 3
    assert meta["teacher"]["grid_size"] == [8, 8] and meta["teacher"]["num_classes"] == 10
    assert meta["external_overridden"] == {"method": "toy-blobs"}  # the script's own name is kept
    assert meta["noise_std"] == pytest.approx(0.03)  # the script's other metadata survives
    record = json.loads((tmp_path / "out" / "set.json").read_text())
    assert record["kind"] == "inversion" and record["method"] == "toy-external" and record["teacher"] == "tiny"
    assert record["dataset"] == "digits" and record["num_images"] == 6 and record["num_patches"] == 64
    assert record["final_kept_patches"] == 64 and record["flops_total"] is None and record["gflops_per_image"] is None
    assert record["wall_time_s"] > 0 and record["time_per_image_s"] == pytest.approx(record["wall_time_s"] / 6)
    assert record["provenance"]["seed"] == 3 and record["config_hash"] == meta["config_hash"]
    assert (tmp_path / "out" / "set.png").stat().st_size > 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["set.json", "set.png", "set.pt"]  # no leftovers
    # Deterministic by seed: a second run gives the same images.
    first = image_set.images.clone()
    assert run_external(tmp_path, teacher_file, BLOBS) == 0
    assert torch.equal(ImageSet.load(tmp_path / "out" / "set.pt").images, first)


def test_toy_inversion_reads_the_teacher(tmp_path, teacher_file) -> None:
    command = (
        f"{{python}} {shlex.quote(str(EXAMPLES / 'toy_inversion.py'))} --teacher {{teacher}} --out {{out}} "
        "--num-images {num_images} --seed {seed} --iterations 3"
    )
    assert run_external(tmp_path, teacher_file, command, name="toy-inversion", num_images=4) == 0
    image_set = ImageSet.load(tmp_path / "out" / "set.pt")
    assert len(image_set) == 4 and tuple(image_set.keep_masks.shape) == (4, 8, 8)
    assert image_set.metadata["method"] == "toy-inversion" and image_set.metadata["iterations"] == 3


def _writer(tmp_path: Path, body: str) -> str:
    """A command running a small script that writes ``{out}`` (body sees ``out``; torch only if used)."""
    script = tmp_path / "writer.py"
    imports = "import sys, torch" if "torch" in body else "import sys"  # torch takes seconds to import
    script.write_text(f"{imports}\nout = sys.argv[1]\n" + body)
    return f"{{python}} {shlex.quote(str(script))} {{out}}"


@pytest.mark.parametrize(
    "body,message",
    [
        ("sys.exit(3)", "exit status 3"),
        ("pass", "without writing"),
        ("open(out, 'w').write('junk')", "not a readable torch file"),
        ("torch.save({'images': torch.rand(6, 3, 32, 32)}, out)", "lacks the keys"),
        (
            "torch.save({'images': torch.rand(2, 3, 32, 32), 'targets': torch.zeros(2, dtype=torch.long)}, out)",
            "produced 2 images but 6",
        ),
        ("torch.save({'images': torch.rand(6, 3, 16, 16), 'targets': torch.zeros(6, dtype=torch.long)}, out)", "size"),
        (
            "torch.save({'images': torch.rand(6, 3, 32, 32) * 2, 'targets': torch.zeros(6, dtype=torch.long)}, out)",
            r"\[0, 1\]",
        ),
        ("torch.save({'images': torch.rand(6, 3, 32, 32), 'targets': torch.full((6,), 10)}, out)", "target label 10"),
    ],
)
def test_bad_external_outputs_are_clear_errors_and_leave_no_file(tmp_path, teacher_file, capsys, body, message) -> None:
    assert run_external(tmp_path, teacher_file, _writer(tmp_path, body)) == 2
    err = capsys.readouterr().err
    assert "smi run-external: error:" in err
    import re

    assert re.search(message, err), err
    assert not (tmp_path / "out" / "set.pt").exists() and not (tmp_path / "out" / "set.json").exists()
    assert [p for p in (tmp_path / "out").iterdir()] == []  # the temporary output is removed too


def test_flops_metadata_and_sparse_masks_are_honoured(tmp_path, teacher_file) -> None:
    body = (
        "masks = torch.zeros(6, 8, 8, dtype=torch.bool); masks[:, :4] = True\n"
        "torch.save({'images': torch.rand(6, 3, 32, 32), 'keep_masks': masks, 'targets': torch.arange(6),"
        " 'metadata': {'flops_total': 6e9}}, out)\n"
    )
    assert run_external(tmp_path, teacher_file, _writer(tmp_path, body)) == 0
    record = json.loads((tmp_path / "out" / "set.json").read_text())
    assert record["flops_total"] == 6e9 and record["gflops_per_image"] == pytest.approx(1.0)
    assert record["final_kept_patches"] == 32
    image_set = ImageSet.load(tmp_path / "out" / "set.pt")
    assert float(image_set.images[:, :, 16:].abs().max()) == 0.0  # stopped patches made black
    assert float(image_set.images[:, :, :16].min()) >= 0 and float(image_set.images[:, :, :16].max()) > 0


def test_render_command_quotes_values_and_rejects_unknown_placeholders() -> None:
    values = {"out": "a b.pt", "seed": 1}
    assert render_command("x --out {out} --seed {seed} {{literal}}", values) == "x --out 'a b.pt' --seed 1 {literal}"
    with pytest.raises(SMIError, match="unknown placeholder"):
        render_command("x {outt}", values)
    with pytest.raises(SMIError, match="unknown placeholder"):
        render_command("x {}", values)
    with pytest.raises(SMIError, match="malformed"):
        render_command("x {out", values)


def test_command_receives_the_device_and_threads(tmp_path, teacher_file) -> None:
    body = (
        "import os\n"
        "open(out + '.seen', 'w').write(' '.join(sys.argv[2:] + [os.environ['OMP_NUM_THREADS']]))\n"
        "import torch\n"
        "torch.save({'images': torch.rand(6, 3, 32, 32), 'targets': torch.arange(6)}, out)\n"
    )
    command = _writer(tmp_path, body) + " {device} {threads}; cp {out}.seen " + shlex.quote(str(tmp_path / "seen"))
    assert (
        main(
            [
                "run-external",
                "--name",
                "probe",
                "--command",
                command,
                "--teacher",
                str(teacher_file),
                "--num-images",
                "6",
                "--out",
                str(tmp_path / "out" / "set.pt"),
                "--metrics",
                str(tmp_path / "out" / "set.json"),
                "--device",
                "cuda:1",
                "--threads",
                "3",
            ]
        )
        == 0
    )
    assert (tmp_path / "seen").read_text() == "cuda:1 3 3"


def test_workflow_passes_the_configured_device_and_threads(tmp_path) -> None:
    import subprocess

    proc = subprocess.run(
        snakemake_argv(
            tmp_path,
            "-n",
            "-p",
            "--cores",
            "4",
            "--configfile",
            str(REPO / "config" / "ci.yaml"),
            "--config",
            "device=cuda:1",
            "threads=3",
        ),
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "SMI_SKIP_MACHINE_CHECKS": "1"},  # planned for GPU nodes from this CPU machine
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    commands = [line for line in proc.stdout.splitlines() if "run-external" in line]
    assert commands and all("--device cuda:1 --threads 3" in line for line in commands), commands


def test_external_sets_load_dense_and_validate_in_the_library(tmp_path) -> None:
    from smi.imageset import load_external, validate_external
    from smi.types import Teacher

    teacher = Teacher(torch.nn.Identity(), "vit_x", 10, {"input_size": (3, 32, 32)}, "digits")
    path = tmp_path / "dense.pt"
    torch.save({"images": torch.rand(3, 3, 32, 32), "targets": torch.arange(3)}, path)
    loaded = load_external(path, (8, 8))
    assert loaded.keep_masks.shape == (3, 8, 8) and bool(loaded.keep_masks.all())  # no masks: all kept
    loaded.keep_masks[:, 4:] = False
    valid = validate_external(loaded, teacher, (8, 8), 2)
    assert len(valid) == 2 and float(valid.images[:, :, 16:].abs().max()) == 0.0  # the first 2, unkept pixels black
    loaded.keep_masks[1] = False
    with pytest.raises(SMIError, match="keeps no patch at all"):
        validate_external(loaded, teacher, (8, 8), 2)
