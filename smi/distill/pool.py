"""The growing image pool of the official knowledge-transfer protocol, on disk.

The official SMI code (``test_kt.py`` with ``synthesis/_utils.py``, Hu et al., ICML 2024) adds
every epoch's synthetic images to a folder of PNG files and draws each training batch from a
fresh shuffle of the whole folder. This pool keeps what that round trip does to the images and
nothing else:

- images are stored as ``uint8`` exactly as the official ``save_image_batch`` writes them:
  ``(clamp(x, 0, 1) * 255)`` truncated, not rounded; stopped patches are black (the official
  code saves the masked images);
- a batch is a uniform draw without replacement from the whole pool (the first batch of a new
  shuffled loader), each image flipped horizontally with probability 1/2 (the official
  ``RandomHorizontalFlip``), then ``/ 255`` (``ToTensor``).

One shard file per epoch (``epoch00001.pt``: uint8 images, keep masks, targets), written
atomically, so the pool survives an interrupted job and is read back memory-mapped: a batch
touches only the pages of its own images, however large the pool grows.
"""

from __future__ import annotations

import bisect
from pathlib import Path
from typing import Any

import torch

from smi.errors import SMIError
from smi.imageset import ImageSet
from smi.io import torch_save
from smi.sparse_vit import mask_to_pixels

#: The official pool stores 8-bit PNGs.
PIXEL_LEVELS = 255


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """Pixels in [0, 1] -> uint8 as the official ``save_image_batch``: clamp, times 255, truncate."""
    return (images.detach().float().clamp(0, 1) * PIXEL_LEVELS).to(torch.uint8)


class ImagePool:
    """An append-only pool of synthetic images, one shard per epoch.

    Args:
        root: Folder of the shard files (created).
        key: Identity of the run that fills the pool; a shard written under another key is not
            reused.
    """

    def __init__(self, root: str | Path, key: str) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.key = key
        self._shards: list[dict[str, Any]] = []
        self._starts: list[int] = []
        self._size = 0

    def __len__(self) -> int:
        return self._size

    @property
    def epochs(self) -> int:
        """Shards (epochs) in the pool."""
        return len(self._shards)

    def shard_path(self, epoch: int) -> Path:
        return self.root / f"epoch{epoch:05d}.pt"

    def stored(self, epoch: int) -> bool:
        """Whether a shard of this run for ``epoch`` is on disk (e.g. written before an interruption)."""
        path = self.shard_path(epoch)
        if not path.is_file():
            return False
        try:
            return torch.load(path, map_location="cpu", mmap=True, weights_only=True).get("key") == self.key
        except Exception:  # a damaged shard is rewritten
            return False

    def write(self, epoch: int, image_set: ImageSet, patch_size: tuple[int, int]) -> None:
        """Store one epoch's images (masked to their kept patches, as uint8) as a shard."""
        pixels = mask_to_pixels(image_set.keep_masks.bool().cpu(), patch_size)
        shard = {
            "key": self.key,
            "epoch": epoch,
            "images": to_uint8(image_set.images.cpu() * pixels),
            "keep_masks": image_set.keep_masks.bool().cpu(),
            "targets": image_set.targets.cpu(),
        }
        torch_save(shard, self.shard_path(epoch))

    def load(self, epoch: int) -> None:
        """Append the stored shard of ``epoch`` (epochs are appended in order)."""
        if epoch != self.epochs + 1:
            raise SMIError(f"pool shards must be appended in order: expected epoch {self.epochs + 1}, got {epoch}.")
        path = self.shard_path(epoch)
        if not path.is_file():
            raise SMIError(
                f"pool shard {path} is missing but the checkpoint counts it; delete the state folder to start over."
            )
        shard = torch.load(path, map_location="cpu", mmap=True, weights_only=True)
        if shard.get("key") != self.key:
            raise SMIError(f"pool shard {self.shard_path(epoch)} belongs to another run; delete the state folder.")
        self._starts.append(self._size)
        self._shards.append(shard)
        self._size += int(shard["images"].shape[0])

    def discard_after(self, epoch: int) -> None:
        """Delete shards of later epochs than ``epoch`` that belong to another run."""
        for path in sorted(self.root.glob("epoch*.pt")):
            number = int(path.stem[len("epoch") :])
            if number > epoch and not self.stored(number):
                path.unlink()

    def images(self, index: torch.Tensor) -> torch.Tensor:
        """The uint8 images (B, C, H, W) at pool positions ``index``."""
        out = []
        for i in index.tolist():
            shard = bisect.bisect_right(self._starts, i) - 1
            out.append(self._shards[shard]["images"][i - self._starts[shard]])
        return torch.stack(out)

    def draw(self, batch_size: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """One official batch: pool indices and pixels in [0, 1] after a random horizontal flip.

        Returns:
            The drawn indices (B,) and float pixels (B, C, H, W) in [0, 1].
        """
        if self._size == 0:
            raise SMIError("the image pool is empty; synthesise images before drawing a batch.")
        index = torch.randperm(self._size, generator=generator)[:batch_size]
        flips = torch.rand(len(index), generator=generator) < 0.5
        pixels = self.images(index)
        pixels = torch.where(flips[:, None, None, None], pixels.flip(3), pixels)
        return index, pixels.float().div(PIXEL_LEVELS)
