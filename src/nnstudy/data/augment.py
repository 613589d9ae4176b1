"""Batch-level input pipeline: uint8 images in, normalised float batches out.

Everything here is a whole-batch tensor op on the training device (no
per-sample Python, no PIL), and every random draw comes from the run's own
generator so a seed fully determines its augmentation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


class BatchPipeline:
    """Normalise, and optionally random-crop (with zero padding) and flip.

    Batches have a leading seed axis: uint8 [K, B, C, H, W] -> float.
    """

    def __init__(self, mean, std, crop_padding: int = 0, flip: bool = False, device="cpu"):
        mean = torch.as_tensor(mean, dtype=torch.float32, device=device).view(-1, 1, 1)
        std = torch.as_tensor(std, dtype=torch.float32, device=device).view(-1, 1, 1)
        # (x / 255 - mean) / std folded into one multiply-add.
        self.scale = 1.0 / (255.0 * std)
        self.shift = -mean / std
        self.crop_padding = crop_padding
        self.flip = flip
        self._cached_key, self._cached = None, None

    @property
    def augments(self) -> bool:
        return self.crop_padding > 0 or self.flip

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        shift, scale = self._per_pixel(x)
        return torch.addcmul(shift, x, scale)  # uint8 x is promoted inside the kernel: no float copy first

    def _per_pixel(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """shift and scale spelled out over [C, H, W] in x's memory layout.

        Broadcasting [C, 1, 1] over channels-last images makes the innermost
        loop C (3) long; a full tensor in the same layout makes the op one flat
        vectorised loop (batch 128 CIFAR: 23 instead of 140 us a step).
        """
        c, h, w = x.shape[-3:]
        channels_last = x.dim() >= 4 and c > 1 and x.stride(-3) == 1
        key = (c, h, w, channels_last)
        if self._cached_key != key:
            def spell_out(t):
                full = t.expand(c, h, w)
                return full.permute(1, 2, 0).contiguous().permute(2, 0, 1) if channels_last else full.contiguous()
            self._cached = (spell_out(self.shift), spell_out(self.scale))
            self._cached_key = key
        return self._cached

    def draw(self, n: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """Random choices for `n` images (one epoch of one seed), drawn up front."""
        p = self.crop_padding
        out = {}
        if p:
            out["dy"] = torch.randint(0, 2 * p + 1, (n,), generator=generator)
            out["dx"] = torch.randint(0, 2 * p + 1, (n,), generator=generator)
        if self.flip:
            out["flip"] = torch.rand(n, generator=generator) < 0.5
        return out

    def train_batch(self, x: torch.Tensor, draws: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        """x: uint8 [K, B, C, H, W]; draws: per-image choices, each [K, B]."""
        x = self.normalise(x)
        if not draws:
            return x
        k, b, c, h, w = x.shape
        x = x.reshape(k * b, c, h, w)
        if "dy" in draws:
            x = _random_crop(x, draws["dy"].reshape(-1), draws["dx"].reshape(-1), self.crop_padding)
        if "flip" in draws:
            flip = draws["flip"].reshape(-1, 1, 1, 1)
            x = torch.where(flip, x.flip(-1), x)
        return x.reshape(k, b, c, h, w)


def _random_crop(x: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, pad: int) -> torch.Tensor:
    """Per-image crop of a zero-padded batch, as one gather."""
    n, c, h, w = x.shape
    xp = F.pad(x, (pad, pad, pad, pad))
    rows = (dy.view(n, 1, 1) + torch.arange(h, device=x.device).view(1, h, 1)).expand(n, h, w)
    cols = (dx.view(n, 1, 1) + torch.arange(w, device=x.device).view(1, 1, w)).expand(n, h, w)
    flat = (rows * (w + 2 * pad) + cols).view(n, 1, h * w).expand(n, c, h * w)
    return xp.flatten(2).gather(2, flat).view(n, c, h, w)
