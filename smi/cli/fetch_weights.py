"""Save the pretrained weights of timm models to <out-dir>/<model>.pth for offline jobs.

Run where the network is reachable (a cluster's login node); teacher and student jobs on
offline compute nodes then read ``<out-dir>/<model>.pth`` only. Reads the weights from the timm
/ Hugging Face cache when they are there, from the hub otherwise (see :mod:`smi.teachers.hub`);
writes one file per model. A file already present is kept, so the command is cheap to repeat.
"""

from __future__ import annotations

import argparse

COMMAND = "fetch-weights"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the command's options to ``parser``."""
    parser.add_argument("--model", action="append", required=True, help="timm model name (repeat for several)")
    parser.add_argument("--out-dir", required=True, help="folder of the weight files")


def run(args: argparse.Namespace) -> int:
    """Save each model's weights unless its file is there, one line per model."""
    from smi.teachers import hub

    for model in dict.fromkeys(args.model):  # each model once, in the given order
        path, written = hub.fetch(model, args.out_dir)
        print(f"{model}: {'saved' if written else 'already present,'} {path}")
    return 0
