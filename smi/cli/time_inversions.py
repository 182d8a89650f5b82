"""Time several inversion methods on one teacher, interleaved in rounds; write speed-ups against dense.

The inversion jobs of a workflow share the machine with other jobs, so their own wall times
depend on their neighbours. This step reads the teacher file and times the methods' optimisation
loops side by side in one process (:func:`smi.bench.time_methods`): each round runs every method
once (the order reversed every other round), on the batch its inversion job uses, with the
iterations and every stopping schedule compressed by the same factor. It writes one record of
kind ``timing`` (``--out``) with each method's fastest round (time per output image) and the
speed-up against dense inversion's fastest round, with every round's figures beside them. The
workflow gives this job the whole machine (nothing runs beside it). FLOPs and memory are not
measured here: the inversion jobs count them exactly.
"""

from __future__ import annotations

import argparse
from typing import Any

from smi.cli import _options as options
from smi.cli._common import inversion_config, positive_int, resolve_device, teacher_id
from smi.config import config_hash, from_dict, to_dict
from smi.errors import SMIError
from smi.io import provenance, write_json

COMMAND = "time-inversions"
#: What the record says about how its times were taken (shown in the efficiency table's notes).
PROTOCOL = "interleaved"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the command's options to ``parser``."""
    options.add_teacher_arguments(parser)
    options.add_json_argument(
        parser, "--methods", 'label -> {"method": registered name (default: the label), "params": {...}}'
    )
    parser.add_argument(
        "--num-images",
        type=positive_int,
        required=True,
        help="output images of each inversion job (sets the batch a method runs)",
    )
    options.add_inversion_arguments(parser)
    parser.add_argument(
        "--timed-iterations",
        type=positive_int,
        default=None,
        help="iterations of each timed run; schedules are compressed in proportion (default: --iterations)",
    )
    parser.add_argument(
        "--rounds",
        type=positive_int,
        default=3,
        help="interleaved rounds, the fastest reported; at least 3 recommended",
    )
    parser.add_argument("--reference", default="dense", help="label speed-ups are taken against")
    options.add_seed_argument(parser)
    options.add_output_arguments(parser, "timing record (JSON)")
    options.add_progress_argument(parser)
    options.add_device_arguments(parser)


def _methods(spec: Any) -> dict[str, Any]:
    """Label -> method instance from the ``--methods`` JSON."""
    from smi.methods.registry import create_method

    if not isinstance(spec, dict) or not spec:
        raise SMIError('--methods must be a non-empty JSON object: {"label": {"method": "smi", "params": {...}}, ...}.')
    methods = {}
    for label, entry in spec.items():
        entry = entry or {}
        if not isinstance(entry, dict) or set(entry) - {"method", "params"}:
            raise SMIError(
                f"--methods entry {label!r} must be an object with only 'method' and 'params' keys, got {entry!r}."
            )
        methods[label] = create_method(entry.get("method") or label, entry.get("params") or {})
    return methods


def run(args: argparse.Namespace) -> int:
    """Time the methods in rounds, write the record and print each method's time."""
    from smi.bench import TimingResult, time_methods
    from smi.inversion import InversionConfig
    from smi.teachers import load_teacher

    device = resolve_device(args)
    methods = _methods(args.methods)
    # Image sources (noise, real data) run no inversion: nothing to time.
    skipped = {label: "image source without inversion" for label, m in methods.items() if not m.synthesizes}
    methods = {label: m for label, m in methods.items() if label not in skipped}
    full = inversion_config(args)
    timed_iterations = args.timed_iterations or full.iterations
    if not 1 <= timed_iterations <= full.iterations:
        raise SMIError(
            f"--timed-iterations {timed_iterations} must lie in [1, {full.iterations}] (the run's iterations)."
        )
    config = from_dict(InversionConfig, {**to_dict(full), "iterations": timed_iterations}, "the timed inversion config")
    teacher = load_teacher(args.teacher, device=device)
    if methods:
        result = time_methods(
            teacher,
            methods,
            config,
            args.num_images,
            args.rounds,
            full.iterations,
            args.reference,
            device,
            args.seed,
            progress=not args.no_progress,
        )
    else:  # only image sources: an empty record keeps the workflow's target list simple
        result = TimingResult({}, config.iterations, full.iterations, args.rounds, None)
    descriptions = {label: m.describe() for label, m in methods.items()}
    chash = config_hash(
        descriptions, to_dict(config), full.iterations, args.num_images, args.rounds, teacher.model_name
    )
    record = {
        "kind": "timing",
        "dataset": teacher.dataset,
        "teacher": teacher_id(args, args.teacher),
        "teacher_seed": teacher.metadata.get("seed"),
        "model_name": teacher.model_name,
        "seed": args.seed,
        "time_protocol": PROTOCOL,
        "rounds": result.rounds,
        "timed_iterations": result.iterations,
        "full_iterations": result.full_iterations,
        "reference": result.reference,
        "timings": result.rows(),
        "not_timed": skipped,
        "provenance": provenance(device, args.seed, chash),
    }
    write_json(args.out, record)
    for row in record["timings"]:
        speedup = f", {row['speedup']:.2f}x vs {result.reference}" if row["speedup"] is not None else ""
        print(
            f"{row['method']}: {row['time_per_image_s'] * 1e3:.2f} ms/image "
            f"(fastest of {result.rounds} rounds){speedup}"
        )
    return 0
