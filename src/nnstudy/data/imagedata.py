"""The decoded dataset every study trains on: uint8 image tensors plus labels."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace

import torch

from nnstudy.errors import UserError

# The subset is part of the experimental design, not of a run's randomness:
# every run of a study must see the same images whatever its seed.
SUBSET_SEED = 0


@dataclass
class ImageData:
    """A dataset decoded into memory.

    Attributes
    ----------
    name : str
        Dataset name as written in the study file.
    classes : list of str
        Class names; the index in this list is the label.
    train_x, test_x : torch.Tensor
        uint8 images of shape [N, C, H, W], contiguous.
    train_y, test_y : torch.Tensor
        int64 labels of shape [N].
    fingerprint : str
        SHA-256 hex digest of the decoded content (see :func:`fingerprint`).
    source : str
        Human-readable description of where the data was read from.
    """

    name: str
    classes: list[str]
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    fingerprint: str
    source: str
    _stats: tuple | None = field(default=None, init=False, repr=False, compare=False)  # see channel_stats

    def subset(self, n_train: int | None, n_test: int | None) -> "ImageData":
        """Return a fixed, class-stratified subset of each split.

        The choice depends only on the data and the sizes (the generator is
        seeded with a constant), so every run of a study sees the same images.

        Parameters
        ----------
        n_train, n_test : int or None
            Number of images to keep in each split; None keeps the split whole.

        Returns
        -------
        ImageData
            A new object (the original is untouched) whose fingerprint is
            derived from the original's and the two sizes.
        """
        train = _pick(self.train_y, n_train, f"{self.name} train")
        test = _pick(self.test_y, n_test, f"{self.name} test")
        if train is None and test is None:
            return self
        out = replace(self, source=f"{self.source}; fixed subset train={n_train} test={n_test}")
        if train is not None:
            out.train_x, out.train_y = self.train_x[train].contiguous(), self.train_y[train]
        if test is not None:
            out.test_x, out.test_y = self.test_x[test].contiguous(), self.test_y[test]
        # Derived rather than rehashed: the subset is a pure function of the
        # parent content and the sizes, and this keeps subsetting cheap.
        key = f"{self.fingerprint}:subset:v1:{len(out.train_y)}:{len(out.test_y)}"
        out.fingerprint = hashlib.sha256(key.encode()).hexdigest()
        return out

    def channel_stats(self) -> tuple[list[float], list[float]]:
        """Per-channel mean and standard deviation of the train images, scaled to [0, 1].

        Summed in float64 over chunks, so no float copy of the whole train set
        is made (4x its uint8 size); remembered, as every job of a study asks.
        """
        if self._stats is None:
            x = self.train_x
            total = torch.zeros(x.shape[1], dtype=torch.float64)
            squares = torch.zeros(x.shape[1], dtype=torch.float64)
            for i in range(0, len(x), _STATS_CHUNK):
                chunk = x[i:i + _STATS_CHUNK].to(torch.float64).div_(255)
                total += chunk.sum(dim=(0, 2, 3))
                squares += chunk.square().sum(dim=(0, 2, 3))
            n = x.shape[0] * x.shape[2] * x.shape[3]
            mean = total / n
            var = (squares - n * mean.square()) / max(n - 1, 1)
            self._stats = (mean.tolist(), var.clamp_min(0).sqrt().clamp_min(1e-6).tolist())
        return self._stats


_STATS_CHUNK = 4096  # images per float64 chunk when computing channel statistics


def _pick(y: torch.Tensor, n: int | None, what: str) -> torch.Tensor | None:
    """Indices (ascending) of a stratified random subset of size n, or None for all."""
    total = len(y)
    if n is None or n == total:
        return None
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise UserError(f"subset size for {what} must be a positive whole number, got {n!r}; fix the subset size in the study file")
    if n > total:
        raise UserError(f"subset of {n} images asked for {what}, but it has only {total}; lower the subset size in the study file to at most {total}")
    gen = torch.Generator().manual_seed(SUBSET_SEED)
    perm = torch.randperm(total, generator=gen)
    labels = y[perm]
    # Rank of each shuffled sample within its class, scaled by the class size:
    # sorting by it interleaves the classes in proportion, so any prefix is
    # (near-)stratified.
    rank = torch.empty(total, dtype=torch.float64)
    for c in labels.unique():
        where = (labels == c).nonzero(as_tuple=True)[0]
        rank[where] = (torch.arange(len(where), dtype=torch.float64) + 0.5) / len(where)
    order = torch.sort(rank, stable=True).indices
    return torch.sort(perm[order[:n]]).values


def fingerprint(classes: list[str], train_x, train_y, test_x, test_y) -> str:
    """SHA-256 hex digest over class names, shapes, dtypes and raw tensor bytes."""
    h = hashlib.sha256()
    h.update(json.dumps({"classes": list(classes)}).encode())
    for t in (train_x, train_y, test_x, test_y):
        h.update(f"|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(memoryview(t.contiguous().numpy()).cast("B"))
    return h.hexdigest()


def check_tensors(name: str, classes, train_x, train_y, test_x, test_y) -> None:
    """Assert the invariants the trainer relies on (a bug here is ours, not the user's)."""
    for x, y in ((train_x, train_y), (test_x, test_y)):
        assert x.dtype == torch.uint8 and x.ndim == 4 and x.is_contiguous(), (name, x.dtype, x.shape)
        assert y.dtype == torch.int64 and y.shape == (x.shape[0],), (name, y.dtype, y.shape)
        assert len(y) == 0 or 0 <= int(y.min()) <= int(y.max()) < len(classes), name
    assert train_x.shape[1:] == test_x.shape[1:], (name, train_x.shape, test_x.shape)
