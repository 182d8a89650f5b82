"""Quantize a teacher calibrated on an image set (suite or official PSAQ-ViT protocol); evaluate on real data.

Data-free post-training quantization. Reads the teacher file, the calibration image set and the
real test split of the teacher's dataset; writes one metrics JSON (kind ``quantization``) per
bit-width pair with the quantized and floating-point accuracy on the real test split, the bits,
calibration source and size, and provenance. ``--bits 4/8 8/8 --range-estimator minmax mse
--out a b c d`` runs every bit-width and range estimator in one process (outputs bits-major:
4/8 minmax, 4/8 mse, 8/8 minmax, ...), so a workflow pays the start-up (imports, dataset, the
full-precision evaluation) once per calibration set. ``--protocol official`` uses the official
PSAQ-ViT / SMI quantizer (docs/protocols.md).
"""

from __future__ import annotations

import argparse

from smi.cli import _options as options
from smi.cli._common import (
    bits_int,
    load_split,
    load_teacher,
    positive_int,
    resolve_device,
    teacher_id as teacher_id_of,
)
from smi.config import config_hash, from_dict, to_dict
from smi.errors import SMIError
from smi.imageset import ImageSet, check_teacher_identity
from smi.io import provenance, write_json
from smi.quant.config import DEFAULT_PROTOCOL, PAPER_CALIB_SIZE, PROTOCOLS, QuantConfig
from smi.quant.observers import RANGE_ESTIMATORS

COMMAND = "quantize"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the command's options to ``parser``."""
    options.add_teacher_arguments(parser)
    options.add_dataset_spec_argument(parser)
    parser.add_argument("--calib-set", required=True, help="calibration image-set file (any method, noise or real)")
    parser.add_argument(
        "--calibration", default=None, help="calibration source name in metrics (default: the set's metadata method)"
    )
    parser.add_argument(
        "--calib-size",
        type=positive_int,
        default=PAPER_CALIB_SIZE,
        help="calibration images (the default is the paper's count)",
    )
    parser.add_argument("--w-bits", type=bits_int, default=8, help="weight bits, 2..16")
    parser.add_argument("--a-bits", type=bits_int, default=8, help="activation bits, 2..16")
    parser.add_argument(
        "--range-estimator",
        choices=RANGE_ESTIMATORS,
        nargs="+",
        default=["minmax"],
        help="activation range estimator(s); several write one --out each (default: minmax, the paper's)",
    )
    parser.add_argument(
        "--protocol",
        choices=PROTOCOLS,
        default=DEFAULT_PROTOCOL,
        help="official: the official PSAQ-ViT / SMI quantizer; suite: the suite's own, docs/protocols.md",
    )
    options.add_json_argument(
        parser, "--quant-config", "other QuantConfig keys (percentile, eval_batch_size, ...)", "none"
    )
    options.add_seed_argument(parser, "the calibration subset")
    parser.add_argument(
        "--bits",
        nargs="+",
        default=None,
        metavar="W/A",
        help="several weight/activation bit pairs, e.g. 4/8 8/8; replaces --w-bits/--a-bits, one --out each "
        "(default: none)",
    )
    parser.add_argument(
        "--out", required=True, nargs="+", help="metrics JSON to write (one per bits pair and estimator, bits-major)"
    )
    options.add_progress_argument(parser)
    options.add_foreign_set_argument(parser)
    options.add_device_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """Quantize for every bit-width pair and estimator, write each record and print a line for each."""
    from smi.heap import retain_freed_memory
    from smi.quant.ptq import fp_evaluation, run_ptq
    from smi.records import Quantization

    retain_freed_memory()  # the evaluation's same-size temporaries then reuse memory (values unchanged)
    device = resolve_device(args)
    pairs = parse_bits(args.bits) if args.bits else [(args.w_bits, args.a_bits)]
    estimators = list(dict.fromkeys(args.range_estimator))
    if len(args.out) != len(pairs) * len(estimators):
        raise SMIError(
            f"got {len(args.out)} --out path(s) for {len(pairs)} bit-width pair(s) x {len(estimators)} range "
            "estimator(s); give one output per pair and estimator, bits-major."
        )
    configs = []
    for w_bits, a_bits in pairs:
        for estimator in estimators:
            values = dict(args.quant_config)
            values.update(
                w_bits=w_bits,
                a_bits=a_bits,
                range_estimator=estimator,
                calib_size=args.calib_size,
                protocol=args.protocol,
            )
            configs.append(from_dict(QuantConfig, values, "the quantization config"))
    teacher = load_teacher(args.teacher, device)
    calib_set = ImageSet.load(args.calib_set)
    calibration = args.calibration or calib_set.metadata.get("method")
    if not calibration:
        raise SMIError(f"{args.calib_set} has no metadata 'method'; name the calibration source with --calibration.")
    teacher_id = teacher_id_of(args, args.teacher)
    identity = check_teacher_identity(calib_set, teacher, args.calib_set, teacher_id, args.allow_foreign_set)
    spec, test_set = load_split(args.dataset_spec, "test", teacher)
    progress = not args.no_progress
    fp = fp_evaluation(teacher, test_set, configs[0].eval_batch_size, device, progress)  # once for all bit-widths
    for config, out in zip(configs, args.out):
        result = run_ptq(teacher, calib_set, test_set, config, args.seed, device, progress, fp_accuracy=fp)
        digest = config_hash(to_dict(config), teacher_id, calib_set.metadata.get("config_hash"), args.seed)
        quantization = Quantization(
            calibration=calibration,
            image_set=str(args.calib_set),
            set_teacher=identity,
            allow_foreign_set=args.allow_foreign_set,
            ptq=result,
        )
        record = quantization.record(teacher, teacher_id, args.seed, provenance(device, args.seed, digest), spec.name)
        write_json(out, record)
        print(
            f"W{config.w_bits}/A{config.a_bits} ({config.protocol}, {config.range_estimator}) calibrated on "
            f"{result['calib_size']} '{calibration}' images: "
            f"top-1 {result['top1']:.2f} (FP {result['fp_top1']:.2f}) -> {out}"
        )
    return 0


def parse_bits(values: list[str]) -> list[tuple[int, int]]:
    """``["4/8", "8/8"]`` -> ``[(4, 8), (8, 8)]``.

    Raises:
        SMIError: For a value that is not ``W/A`` with integers.
    """
    pairs = []
    for value in values:
        parts = value.split("/")
        if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
            raise SMIError(f"--bits value {value!r} is not W/A (weight bits / activation bits), e.g. 4/8.")
        pairs.append((int(parts[0]), int(parts[1])))
    return pairs
