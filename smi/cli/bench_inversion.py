"""Time dense inversion and SMI side by side (random weights) and print speed-up, FLOP and memory ratios.

Reads nothing but a timm model name: the model gets random weights, so the benchmark needs no
teacher file. Prints the run's settings and a table of the figures; ``--out`` also writes them
as JSON (:func:`smi.bench.run_benchmark`).
"""

from __future__ import annotations

import argparse

from tabulate import tabulate

from smi.cli import _options as options
from smi.cli._common import nonneg_int, open_fraction, positive_int, resolve_device
from smi.inversion.schedule import StoppingSchedule
from smi.io import provenance, write_json

COMMAND = "bench-inversion"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the command's options to ``parser``."""
    parser.add_argument("--model", default="deit_tiny_patch16_224", help="timm ViT name")
    parser.add_argument("--img-size", type=positive_int, default=None, help="input size (default: the model's)")
    parser.add_argument("--batch-size", type=positive_int, default=8, help="images optimised together")
    parser.add_argument("--iterations", type=positive_int, default=60, help="iterations of the timed run")
    parser.add_argument(
        "--schedule",
        type=nonneg_int,
        nargs="+",
        default=None,
        help="stopping iterations of the timed run "
        "(default: the paper's 50/100/200/300 of 4000, compressed to --iterations)",
    )
    parser.add_argument("--ratio", type=open_fraction, default=0.3, help="fraction of active patches stopped per step")
    parser.add_argument(
        "--repeats", type=positive_int, default=1, help="alternating dense/SMI rounds, the median reported"
    )
    options.add_seed_argument(parser, "the timed runs' targets and images")
    parser.add_argument("--out", default=None, help="JSON file to write the figures to as well (default: none)")
    options.add_device_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """Run the benchmark, print its figures and write them with ``--out``."""
    from smi.bench import PAPER_ITERATIONS_TOTAL, random_teacher, run_benchmark

    device = resolve_device(args)
    teacher = random_teacher(args.model, args.img_size)
    if args.schedule is None:
        schedule = StoppingSchedule.build([50, 100, 200, 300], args.ratio).scaled(
            args.iterations / PAPER_ITERATIONS_TOTAL
        )
    else:
        schedule = StoppingSchedule.build(args.schedule, args.ratio)
    schedule.within(args.iterations)  # before any timed work: a late step is an error, not dropped
    result = run_benchmark(teacher, args.batch_size, args.iterations, schedule, args.repeats, device, args.seed)
    summary = result.summary()
    counts = schedule.kept_counts(result.dense[0].num_patches)
    print(
        f"model {args.model}, batch {args.batch_size}, {args.iterations} iterations, "
        f"schedule {list(schedule.iterations)} "
        f"(kept {' -> '.join(map(str, counts))}), device {device}, threads {provenance(device)['threads']}"
    )
    rows = [[k, f"{v:.4f}" if isinstance(v, float) else ", ".join(f"{x:.3f}" for x in v)] for k, v in summary.items()]
    print(tabulate(rows, headers=["figure", "value"], tablefmt="github"))
    if args.out:
        write_json(
            args.out,
            {
                "model": args.model,
                "batch_size": args.batch_size,
                "iterations": args.iterations,
                "schedule": list(schedule.iterations),
                **summary,
                "provenance": provenance(device, args.seed),
            },
        )
    return 0
