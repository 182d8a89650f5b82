#!/usr/bin/env python
"""A toy *external* inversion method: plain torch + timm, no import of the suite.

It stands for a method that lives in another repository. It reads a teacher file of the suite
(a torch file with ``state_dict`` and ``smi_teacher`` metadata: model_name, model_kwargs,
num_classes, data_config), optimises a batch of images from Gaussian noise with Adam on cross
entropy to balanced labels (no jitter, no priors: a deliberately bare dense inversion), and
writes the image-set file format of the suite:

    {"format_version": 1,
     "images": float32 (M, C, H, W) in [0, 1],
     "keep_masks": bool (M, gh, gw),          # all True here: dense images
     "targets": int64 (M,),
     "metadata": {"method": ..., ...}}

Usage through the suite (placeholders are filled by ``smi run-external``)::

    smi run-external --name toy-external \\
        --command "python examples/external_baseline/toy_inversion.py --teacher {teacher} \\
                   --out {out} --num-images {num_images} --seed {seed}" \\
        --teacher T.pt --num-images 64 --seed 0 --out SET.pt --metrics M.json
"""

from __future__ import annotations

import argparse

import timm
import torch
import torch.nn.functional as F


def load_teacher(path: str) -> tuple[torch.nn.Module, dict]:
    """The timm model and the suite metadata of a teacher file."""
    blob = torch.load(path, map_location="cpu", weights_only=True)
    meta = blob["smi_teacher"]
    model = timm.create_model(
        meta["model_name"], pretrained=False, num_classes=meta["num_classes"], **meta["model_kwargs"]
    )
    model.load_state_dict(blob["state_dict"])
    return model.eval().requires_grad_(False), meta


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--num-images", type=int, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--iterations", type=int, default=50)
    parser.add_argument("--lr", type=float, default=0.1)
    args = parser.parse_args()

    model, meta = load_teacher(args.teacher)
    config = meta["data_config"]
    c, h, w = config["input_size"]
    mean = torch.tensor(config["mean"]).view(1, -1, 1, 1)
    std = torch.tensor(config["std"]).view(1, -1, 1, 1)
    lower, upper = (0 - mean) / std, (1 - mean) / std

    generator = torch.Generator().manual_seed(args.seed)
    labels = torch.arange(args.num_images) % meta["num_classes"]
    labels = labels[torch.randperm(args.num_images, generator=generator)]
    x = torch.randn((args.num_images, c, h, w), generator=generator).requires_grad_(True)
    optimizer = torch.optim.Adam([x], lr=args.lr, betas=(0.5, 0.99))
    for _ in range(args.iterations):
        optimizer.zero_grad()
        F.cross_entropy(model(x), labels).backward()
        optimizer.step()
        with torch.no_grad():
            x.copy_(torch.maximum(torch.minimum(x, upper), lower))

    patch = model.patch_embed.patch_size
    grid = (h // patch[0], w // patch[1])
    images = (x.detach() * std + mean).clamp(0, 1)
    torch.save(
        {
            "format_version": 1,
            "images": images.float(),
            "keep_masks": torch.ones(args.num_images, *grid, dtype=torch.bool),
            "targets": labels.long(),
            "metadata": {"method": "toy-external", "iterations": args.iterations, "lr": args.lr},
        },
        args.out,
    )


if __name__ == "__main__":
    main()
