#!/usr/bin/env python
"""A toy *external* method: class-coloured blobs, written without importing the suite.

It stands for an image source from another repository (or language) and needs nothing but
torch: image i of class c is a dark background with a soft Gaussian blob whose colour is the
hue c / num_classes, at a seeded random position and size, plus a little noise. It does not
look at the teacher, so it is a "know-nothing" reference, like noise with class structure.

It writes the suite's image-set file format (a ``torch.save`` dict):

    {"format_version": 1,
     "images": float32 (M, C, H, W) in [0, 1],
     "targets": int64 (M,),
     "keep_masks": bool (M, gh, gw),   # only with --patch-size; omitted = dense images
     "metadata": {"method": "toy-blobs", ...}}

Through the suite (``smi run-external`` fills the placeholders)::

    smi run-external --name toy-external \\
        --command "{python} examples/external_baseline/toy_blobs.py --num-images {num_images} \\
                   --num-classes {num_classes} --img-size {img_size} --seed {seed} --out {out}" \\
        --teacher T.pt --num-images 64 --seed 0 --out SET.pt --metrics M.json
"""

from __future__ import annotations

import argparse
import colorsys
import math

import torch

BACKGROUND = 0.1  # dark grey, so the blob's colour carries the class
NOISE_STD = 0.03
RADIUS_RANGE = (0.15, 0.35)  # blob standard deviation as a fraction of the side


def blobs(
    num_images: int, num_classes: int, img_size: int, channels: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (M, C, H, W) in [0, 1] and balanced, shuffled labels (M,)."""
    generator = torch.Generator().manual_seed(seed)
    labels = (torch.arange(num_images) % num_classes)[torch.randperm(num_images, generator=generator)]
    coords = (torch.arange(img_size, dtype=torch.float32) + 0.5) / img_size
    yy, xx = torch.meshgrid(coords, coords, indexing="ij")
    images = torch.empty(num_images, channels, img_size, img_size)
    for i, label in enumerate(labels.tolist()):
        cy, cx = (0.25 + 0.5 * torch.rand(2, generator=generator)).tolist()
        low, high = RADIUS_RANGE
        sigma = low + (high - low) * float(torch.rand((), generator=generator))
        blob = torch.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma**2))
        colour = torch.tensor(colorsys.hsv_to_rgb(label / num_classes, 1.0, 1.0))[:channels]
        if channels > 3:
            colour = torch.cat([colour, colour.new_full((channels - 3,), float(colour.mean()))])
        image = BACKGROUND + (colour.view(-1, 1, 1) - BACKGROUND) * blob
        image = image + NOISE_STD * torch.randn(image.shape, generator=generator)
        images[i] = image.clamp(0, 1)
    return images, labels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-images", type=int, required=True)
    parser.add_argument("--num-classes", type=int, required=True)
    parser.add_argument("--img-size", type=int, required=True)
    parser.add_argument("--channels", type=int, default=3)
    parser.add_argument("--patch-size", type=int, default=None, help="write full keep masks for this patch grid")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    images, labels = blobs(args.num_images, args.num_classes, args.img_size, args.channels, args.seed)
    blob = {
        "format_version": 1,
        "images": images,
        "targets": labels.long(),
        "metadata": {"method": "toy-blobs", "background": BACKGROUND, "noise_std": NOISE_STD},
    }
    if args.patch_size:
        side = math.ceil(args.img_size / args.patch_size)
        blob["keep_masks"] = torch.ones(args.num_images, side, side, dtype=torch.bool)
    torch.save(blob, args.out)


if __name__ == "__main__":
    main()
