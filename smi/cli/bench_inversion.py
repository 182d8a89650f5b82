"""``smi bench-inversion``: dense vs SMI cost on one model in one process."""

from __future__ import annotations

import argparse

from tabulate import tabulate

from smi.cli._common import add_device_arguments, nonneg_int, open_fraction, positive_int, resolve_device
from smi.inversion.schedule import StoppingSchedule
from smi.io import provenance, write_json

COMMAND = "bench-inversion"
HELP = "Time dense inversion and SMI side by side (random weights) and print speed-up, FLOP and memory ratios."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="deit_tiny_patch16_224", help="timm ViT name")
    parser.add_argument("--img-size", type=positive_int, default=None, help="input size (default: the model's)")
    parser.add_argument("--batch-size", type=positive_int, default=8)
    parser.add_argument("--iterations", type=positive_int, default=60, help="iterations of the timed run")
    parser.add_argument(
        "--schedule",
        type=nonneg_int,
        nargs="+",
        default=None,
        help="stopping iterations of the timed run "
        "(default: the paper's 50/100/200/300 of 4000, compressed to --iterations)",
    )
    parser.add_argument("--ratio", type=open_fraction, default=0.3)
    parser.add_argument(
        "--repeats", type=positive_int, default=1, help="alternating dense/SMI rounds (median reported)"
    )
    parser.add_argument("--seed", type=nonneg_int, default=0)
    parser.add_argument("--out", default=None, help="also write the figures as JSON")
    add_device_arguments(parser)


def run(args: argparse.Namespace) -> int:
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
