"""Run an external inversion command that writes an image-set file, validate it and record its cost.

An external inversion method (another repository, another language) becomes a baseline by
writing the image-set file format of :mod:`smi.imageset` from a shell command. This step reads
the teacher file, fills the command template's placeholders, runs it and times its wall clock,
validates the produced file against the teacher, fills in the suite's metadata (method name,
teacher description, seed, config hash), writes the set atomically at ``--out`` and an
inversion metrics record with the same keys as ``smi invert`` at ``--metrics`` (and a PNG grid
with ``--grid``), so evaluators, tables and the report treat it like any registered method.

The command writes to a temporary path (its ``{out}``), never to ``--out`` itself, so a failed
or invalid run leaves no file that the workflow would take as finished. FLOPs are unknown
unless the external method records ``flops_total`` in its metadata; memory is not measured.
``keep_masks`` may be left out of the file by a dense method (every patch is then kept).

The command is stopped (with every process it started) after ``--timeout`` seconds, 24 hours by
default, so a hung method cannot hang the workflow. A file whose metadata records another
teacher's fingerprint is refused unless ``--allow-foreign-set``.
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import string
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from smi.cli import _options as options
from smi.cli._common import positive_float, positive_int, save_grid, teacher_id as teacher_id_of
from smi.config import config_hash
from smi.errors import SMIError

COMMAND = "run-external"
#: Default wall-clock limit of the command: generous, but a hung method does not hang the workflow.
DEFAULT_TIMEOUT_S = 24 * 3600.0

#: Placeholders a command template may use, and what they stand for.
PLACEHOLDERS: dict[str, str] = {
    "teacher": "path of the teacher file",
    "out": "path the command must write the image-set file to",
    "num_images": "number of images to produce",
    "seed": "seed of the job",
    "num_classes": "teacher's class count",
    "img_size": "teacher's input side in pixels",
    "patch_size": "teacher's patch side in pixels",
    "device": "the --device value (cpu, cuda, cuda:N)",
    "threads": "the --threads value (CPU threads; also set as OMP_NUM_THREADS and MKL_NUM_THREADS)",
    "python": "the Python interpreter running smi",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the command's options to ``parser``."""
    parser.add_argument("--name", required=True, help="method name used in metadata, metrics and tables")
    # dest differs from "command": the top-level parser stores the sub-command name there.
    parser.add_argument(
        "--command",
        dest="template",
        required=True,
        help="shell command template; placeholders: "
        + ", ".join("{" + k + "}" for k in PLACEHOLDERS)
        + " ({{ }} for braces)",
    )
    options.add_teacher_arguments(parser)
    parser.add_argument("--num-images", type=positive_int, required=True, help="images the command must produce")
    options.add_seed_argument(parser, "the job, handed to the command as {seed}")
    options.add_output_arguments(parser, "image-set file (.pt)", metrics=True, grid=True)
    options.add_device_arguments(
        parser,
        device_help="device handed to the command as {device} and recorded in provenance",
        threads_help="CPU threads handed to the command as {threads} and as OMP/MKL_NUM_THREADS",
    )
    parser.add_argument(
        "--timeout",
        type=positive_float,
        default=DEFAULT_TIMEOUT_S,
        help="seconds after which the command is stopped and the step fails (default: %(default)g, 24 h)",
    )
    options.add_foreign_set_argument(parser)


def render_command(template: str, values: dict[str, Any]) -> str:
    """Fill the template's placeholders with shell-quoted values.

    Raises:
        SMIError: For an unknown, positional or malformed placeholder.
    """
    try:
        fields = [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
    except ValueError as exc:
        raise SMIError(
            f"command template {template!r} is malformed ({exc}); write literal braces as {{{{ and }}}}."
        ) from exc
    unknown = sorted({f for f in fields if f not in PLACEHOLDERS})
    if unknown:
        raise SMIError(
            f"command template uses unknown placeholder(s) {unknown}; valid ones are "
            f"{['{' + k + '}' for k in PLACEHOLDERS]} (write literal braces as {{{{ and }}}})."
        )
    return template.format_map({k: shlex.quote(str(v)) for k, v in values.items()})


def run(args: argparse.Namespace) -> int:
    """Run the command, validate and re-save its image set, write the record and print a summary."""
    from smi.imageset import check_teacher_identity, load_external, validate_external
    from smi.io import provenance, write_json
    from smi.methods.synthesize import teacher_description
    from smi.records import InversionCosts, inversion_record, mean_kept_patches
    from smi.sparse_vit import TokenSubsetViT
    from smi.teachers import load_teacher

    torch.set_num_threads(args.threads)
    teacher = load_teacher(args.teacher, device="cpu")
    vit = TokenSubsetViT(teacher.model)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, raw_name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".external.pt", dir=out.parent)
    os.close(fd)
    raw = Path(raw_name)
    raw.unlink()  # the command must create it; an empty leftover would hide a silent failure
    values = {
        "teacher": args.teacher,
        "out": raw,
        "num_images": args.num_images,
        "seed": args.seed,
        "num_classes": teacher.num_classes,
        "img_size": teacher.input_size[1],
        "patch_size": vit.patch_size[0],
        "device": args.device,
        "threads": args.threads,
        "python": sys.executable,
    }
    command = render_command(args.template, values)
    teacher_id = teacher_id_of(args, args.teacher)
    try:
        start = time.perf_counter()
        # The thread count reaches commands that ignore {threads} through the usual variables.
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
        returncode = run_command(command, args.name, args.timeout, env)
        wall = time.perf_counter() - start
        if returncode != 0:
            raise SMIError(f"external method {args.name!r} failed with exit status {returncode}: {command}")
        if not raw.is_file():
            raise SMIError(
                f"external method {args.name!r} exited without writing the image-set file its {{out}} names: {command}"
            )
        produced_set = load_external(raw, vit.grid_size)
        identity = check_teacher_identity(
            produced_set, teacher, "written by the external command", teacher_id, args.allow_foreign_set
        )
        produced = len(produced_set)
        image_set = validate_external(produced_set, teacher, vit.grid_size, args.num_images)
    finally:
        if raw.exists():
            raw.unlink()

    chash = config_hash(
        {"method": args.name, "command": args.template}, teacher.model_name, teacher.dataset, args.num_images
    )
    external = dict(image_set.metadata)
    suite = {
        "method": args.name,
        "method_params": {"command": args.template},
        "teacher": teacher_description(teacher),
        "teacher_id": teacher_id,
        "seed": args.seed,
        "config_hash": chash,
        "produced_images": produced,
        "external_command": command,
    }
    overridden = {k: external[k] for k in suite if k in external and external[k] != suite[k]}
    image_set.metadata = {**external, **suite, **({"external_overridden": overridden} if overridden else {})}
    image_set.save(out)

    flops = external.get("flops_total")
    flops = float(flops) if isinstance(flops, (int, float)) and not isinstance(flops, bool) else None
    # Costs are per produced image, as for 'smi invert' (a method may overshoot the request); the
    # suite measures only the command's wall time (FLOPs only if the command reports them).
    costs = InversionCosts(
        num_images=produced,
        num_patches=vit.num_patches,
        final_kept_patches=mean_kept_patches(image_set.keep_masks),
        wall_time_s=wall,
        flops_total=flops,
        peak_memory_bytes=None,
        peak_memory_after_last_stop_bytes=None,
        memory_kind=None,
    )
    record = inversion_record(
        teacher=teacher,
        teacher_id=teacher_id,
        seed=args.seed,
        image_set=args.out,
        method={"method": args.name, "method_params": {"command": args.template}},
        costs=costs,
        config_hash=chash,
        provenance=provenance(args.device if _device_known(args.device) else "cpu", args.seed, chash),
        inversion_config=None,
        external=True,
        set_teacher=identity,
        allow_foreign_set=args.allow_foreign_set,
        device=args.device,  # what the command was told; provenance names this process's device
    )
    write_json(args.metrics, record)
    if args.grid:
        save_grid(image_set.images, args.grid)
    print(f"{args.name}: {len(image_set)} images, {wall / produced:.3f} s/image (external command wall time)")
    return 0


def run_command(command: str, name: str, timeout_s: float, env: dict[str, str] | None = None) -> int:
    """Run ``command`` in a shell; stop it and everything it started after ``timeout_s`` seconds.

    The command gets its own process group, so that stopping the shell also stops the method it
    launched (a plain ``subprocess.run`` timeout would leave that running).

    Returns:
        The command's exit status.

    Raises:
        SMIError: When the timeout is hit.
    """
    process = subprocess.Popen(command, shell=True, start_new_session=True, env=env)
    try:
        return process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        _stop(process)
        raise SMIError(
            f"external method {name!r} did not finish within {timeout_s:g} s and was stopped; raise --timeout "
            f"(the method's 'timeout_s' in the config) if it needs longer: {command}"
        ) from None
    except BaseException:  # Ctrl-C: the own process group does not get the terminal's signal
        _stop(process)
        raise


def _stop(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()


def _device_known(device: str) -> bool:
    """Whether provenance can name the device here (the command may use a GPU this process cannot see)."""
    try:
        parsed = torch.device(device)
    except RuntimeError:
        return False
    return parsed.type == "cpu" or (parsed.type == "cuda" and torch.cuda.is_available())
