"""The training loop: one variant, K seeds, data kept as tensors on the device.

One readable loop in the spirit of airbench: per epoch, a `randperm` per seed
gives the data order, batches are gathered from the cached uint8 tensor and
normalised/augmented as whole-batch tensor ops, and K seeds step together.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field
from typing import Callable

import torch

from nnstudy.config.schema import RunConfig, evaluates
from nnstudy.data.augment import BatchPipeline
from nnstudy.errors import UserError
from nnstudy.history import EpochRow
from nnstudy.models import build_model, count_parameters
from nnstudy.training.losses import make_loss, per_seed_loss
from nnstudy.training.optim import lr_factor, make_optimizer, set_lrs
from nnstudy.training.probes import Prober
from nnstudy.training.progress import EpochProgress
from nnstudy.training.seed_stack import SeedStack
from nnstudy.training.stacking import loss_key, member_groups, trains_stacked

CHECKPOINT_FORMAT = 1


@dataclass
class TrainOptions:
    """How to train (never what): results must not depend on these beyond float rounding."""

    device: str = "cpu"
    vectorize: bool = True
    compile: bool = False
    progress: bool = True
    label: str = ""
    position: int = 0  # progress-bar line, one per parallel worker
    channels_last: bool | None = None  # None: on for CNNs on CPU, where it is measured faster
    probes: bool = False  # mechanism probes at initialisation and after each epoch (training/probes.py)
    stack_of_one: bool = False  # one seed trains on the stacked path as a stack of one (stacking.trains_stacked)


@dataclass
class SeedState:
    """What a run has done so far, beyond its weights.

    A diverged seed's history ends at the epoch whose loss became non-finite:
    stacked or alone, it records the same rows (its stacked twin trains on
    unseen, its numbers no longer mean anything).
    """

    history: list[EpochRow] = field(default_factory=list)
    diverged: bool = False
    predictions: dict[int, torch.Tensor] = field(default_factory=dict)  # epoch -> predicted test labels
    probes: dict[int, dict[str, float]] = field(default_factory=dict)  # epoch (0: at initialisation) -> probes


def _data_seed(seed: int) -> int:
    # Separate streams for initialisation and for data order/augmentation.
    return (seed * 0x9E3779B1 + 0x5EED) % (2**63)


class GroupTrainer:
    """Trains the seeds of one variant together; see `SeedStack` for how.

    `member_cfgs` (one per seed) stacks runs of several variants that differ
    only in values (`VALUE_KEYS`: initialisation, activation, pooling, loss,
    optimiser settings): member k builds its network, computes its loss and
    steps with its own config; everything else comes from `cfg`, which they share.
    """

    def __init__(self, cfg: RunConfig, data, seeds: list[int], options: TrainOptions,
                 member_cfgs: list[RunConfig] | None = None):
        self.cfg, self.data, self.seeds, self.options = cfg, data, list(seeds), options
        self.members = member_cfgs or [cfg] * len(self.seeds)
        self.device = torch.device(options.device)
        self.stacked = trains_stacked(cfg, len(self.seeds), options.vectorize, options.stack_of_one)
        if len(self.seeds) > 1 and not self.stacked:
            raise ValueError("seeds train together only when stacked; pass one seed at a time")
        channels_last = options.channels_last
        if channels_last is None:
            channels_last = cfg.model.kind == "cnn" and self.device.type == "cpu"
        self.model_changes: dict = {}  # what nnstudy changed in a user's network (init, activation, norm)
        self.stack = self._build_stack(channels_last)
        self.n_params = count_parameters(self.stack.module)  # one seed's network (a meta copy when stacked)
        self.optimizer = make_optimizer(cfg.train, self.stack.parameters(), [m.train for m in self.members])
        self.loss_groups, self.member_losses = self._losses_by_member()
        self.loss = self.member_losses[0]
        self.generators = [torch.Generator().manual_seed(_data_seed(s)) for s in self.seeds]
        self.states = [SeedState() for _ in self.seeds]
        self.epoch = 0  # epochs the group has trained (a diverged seed's history stops earlier)
        self.epoch_seconds = 0.0  # wall time of the last epoch trained, evaluation included
        self.step_hook: Callable[[str], None] | None = None  # called before every step (tests crash a run there)
        mean, std = normalisation(cfg, data)
        self.pipeline = BatchPipeline(mean, std, cfg.dataset.crop_padding, cfg.dataset.flip, self.device)
        self._place_data(channels_last)
        self._set_precision()
        if options.compile:
            self.stack.forward_train = torch.compile(self.stack.forward_train)
        self.probers = self._probers() if options.probes else []

    def _build_stack(self, channels_last: bool) -> SeedStack:
        """The seeds' networks, stacked; member k builds its own (its variant may differ in values)."""
        input_shape, n_classes = tuple(self.data.train_x.shape[1:]), len(self.data.classes)
        return SeedStack(lambda k: build_model(self.members[k].model, input_shape, n_classes, self.cfg.source_dir,
                                               self.model_changes),
                         self.seeds, self.device, self.stacked, channels_last)

    def _losses_by_member(self):
        """Members with the same loss share one call: [(loss, member indices)], and each member's loss."""
        groups = [(make_loss(self.members[ks[0]].train, self.cfg.source_dir), ks)
                  for ks in member_groups([loss_key(m.train) for m in self.members])]
        per_member = [fn for k in range(len(self.members)) for fn, ks in groups if k in ks]
        return [(fn, torch.tensor(ks, device=self.device)) for fn, ks in groups], per_member

    def _place_data(self, channels_last: bool) -> None:
        """The dataset lives on the training device, as uint8: 4x smaller than float.

        Stored channels-last when the convolutions run so: gathered batches then
        arrive in that layout and normalising keeps it, with no per-step copy.
        """
        self.train_x = self.data.train_x.to(self.device)
        if channels_last and self.train_x.dim() == 4:
            self.train_x = self.train_x.contiguous(memory_format=torch.channels_last)
        self.gather_train = _image_gather(self.train_x)
        self.train_y = self.data.train_y.to(self.device)
        self.test_x = self.data.test_x.to(self.device)
        self.test_y = self.data.test_y.to(self.device)

    def _set_precision(self) -> None:
        if self.device.type == "cuda" and self.cfg.train.precision == "fp32":
            # "fp32" means fp32: TF32 convolutions (cuDNN's default) round to 10-bit
            # mantissas, enough to make a seed's run depend on the kernel picked.
            torch.backends.cudnn.allow_tf32 = False
            torch.backends.cuda.matmul.allow_tf32 = False
        self.autocast = (torch.autocast(self.device.type, dtype=torch.bfloat16) if self.cfg.train.precision == "bf16"
                         else contextlib.nullcontext())

    def _probers(self) -> list[Prober]:
        """One prober per member; members with the same network structure share one."""
        by_structure: dict[str, Prober] = {}
        out = []
        for k in range(len(self.seeds)):
            module = self.stack.member_module(k)
            if repr(module) not in by_structure:
                by_structure[repr(module)] = Prober(module, self.data, self.pipeline, self.loss, self.device)
            out.append(by_structure[repr(module)])
        return out

    # --- checkpoints ---------------------------------------------------------------------
    def checkpoint(self, k: int) -> dict:
        """Everything needed to continue seed k exactly where it stands (an epoch boundary)."""
        return {
            "format": CHECKPOINT_FORMAT,
            "seed": self.seeds[k],
            "epoch": self.epoch,
            "model": self.stack.model_state(k),
            "optimizer": self.stack.optimizer_state(self.optimizer, k),
            "data_rng": self.generators[k].get_state(),
            "torch_rng": torch.get_rng_state(),
            "history": [vars(r) for r in self.states[k].history],
            "diverged": self.states[k].diverged,
            "predictions": dict(self.states[k].predictions),
            "probes": dict(self.states[k].probes),
        }

    def restore(self, checkpoints: list[dict]) -> None:
        """Continue from per-seed checkpoints, all at the same epoch."""
        epochs = {c["epoch"] for c in checkpoints}
        if len(epochs) != 1:
            raise ValueError(f"checkpoints of one group must share an epoch, got {sorted(epochs)}")
        self.stack.load_model_states([c["model"] for c in checkpoints])
        self.stack.load_optimizer_states(self.optimizer, [c["optimizer"] for c in checkpoints])
        for gen, c in zip(self.generators, checkpoints):
            gen.set_state(c["data_rng"])
        torch.set_rng_state(checkpoints[0]["torch_rng"])
        self.states = [SeedState([EpochRow(**r) for r in c["history"]], c["diverged"], dict(c.get("predictions", {})),
                                 dict(c.get("probes", {}))) for c in checkpoints]
        self.epoch = epochs.pop()

    # --- training ------------------------------------------------------------------------
    def fit(self, on_epoch: Callable[["GroupTrainer", dict[int, torch.Tensor]], None], predict_epochs=(),
            eval_epochs=()) -> None:
        """Train to `train.epochs`; after each epoch call `on_epoch(self, predictions)`.

        The test set is evaluated, and the networks probed, on each member's
        cadence (`train.eval_every`), on the first and last epoch and on
        `eval_epochs`; between those an epoch's test loss and accuracy are NaN.
        `predictions` maps seed index -> predicted test labels, filled on the
        epochs listed in `predict_epochs` and on the last one, for the seeds
        that have not diverged (a diverged network's argmax is no prediction).
        """
        total = self.cfg.train.epochs
        also = set(predict_epochs) | set(eval_epochs)
        if self.probers and self.epoch == 0:
            self.probe(0, shifts=False, extra={})
        while self.epoch < total:
            epoch = self.epoch + 1
            lrs = [m.train.lr * lr_factor(m.train, epoch - 1) for m in self.members]
            set_lrs(self.optimizer, lrs)
            start = time.perf_counter()
            train_loss, train_acc = self.train_epoch(epoch, total)
            looks = any(evaluates(m.train, epoch, also) for m in self.members)
            nan = [math.nan] * len(self.seeds)
            test_loss, test_acc, preds = self.evaluate() if looks else (nan, nan, None)
            seconds = self.epoch_seconds = time.perf_counter() - start
            self.epoch = epoch
            keep = epoch in predict_epochs or epoch == total
            kept = {}
            for k, state in enumerate(self.states):
                if state.diverged:
                    continue
                row = EpochRow(epoch, float(train_loss[k]), float(train_acc[k]), float(test_loss[k]),
                               float(test_acc[k]), lrs[k], seconds)
                if not (math.isfinite(row.train_loss) and (math.isfinite(row.test_loss) or not looks)):
                    state.diverged = True
                    row.test_acc = math.nan
                elif keep:
                    kept[k] = state.predictions[epoch] = preds[k].to(torch.int16 if len(self.data.classes) < 2**15
                                                                     else torch.int32)
                state.history.append(row)
            if self.probers and looks:
                self.probe(epoch, shifts=keep, extra={"step_ms": 1000 * self.train_seconds / self.steps})
            on_epoch(self, kept)
            if all(s.diverged for s in self.states):
                break

    def _losses(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """One loss per member [K], each from its own loss function."""
        if len(self.loss_groups) == 1:
            return per_seed_loss(self.loss_groups[0][0], logits, y)
        out = logits.new_empty(logits.shape[0])
        for loss, ks in self.loss_groups:
            out = out.index_copy(0, ks, per_seed_loss(loss, logits.index_select(0, ks), y.index_select(0, ks)))
        return out

    def probe(self, epoch: int, shifts: bool, extra: dict) -> None:
        """Each live seed's probes after `epoch` (0: at initialisation) into its state; `shifts`: the report-epoch ones."""
        for k, state in enumerate(self.states):
            if not state.diverged:  # a diverged network's numbers mean nothing
                prober = self.probers[k]
                state.probes[epoch] = {**prober.measure(self.stack.model_state(k), shifts, self.member_losses[k]),
                                       **extra, **(prober.cost() if epoch == 0 else {})}

    def train_epoch(self, epoch: int, total: int):
        """One epoch of training, every seed stepping together: per-seed mean loss and accuracy (lists of K)."""
        started = time.perf_counter()
        t, k, n = self.cfg.train, len(self.seeds), self.train_x.shape[0]
        bs = t.batch_size
        self.stack.train(True)
        # One permutation per seed, drawn on the CPU from that seed's generator;
        # augmentation choices are drawn per epoch too, so a step only slices them.
        perms = torch.stack([torch.randperm(n, generator=g) for g in self.generators]).to(self.device)
        draws = {}
        if self.pipeline.augments:
            per_seed = [self.pipeline.draw(n, g) for g in self.generators]
            draws = {key: torch.stack([d[key] for d in per_seed]).to(self.device) for key in per_seed[0]}
        loss_sum = torch.zeros(k, device=self.device)
        correct = torch.zeros(k, device=self.device, dtype=torch.long)
        steps = (n + bs - 1) // bs
        bar = EpochProgress(self.options.label, epoch, total, steps, bs * k, self.options.progress, self.options.position)
        for start in range(0, n, bs):
            if self.step_hook is not None:  # tests kill the process mid-epoch here (store/files.py: crash_point)
                self.step_hook(f"train-step epoch {epoch} step {start // bs + 1} of {steps}")
            idx = perms[:, start:start + bs]
            # Gathered per step: a strided slice of per-epoch labels made the stacked step ~30% slower.
            y = self.train_y[idx]
            batch_draws = {key: d[:, start:start + bs] for key, d in draws.items()}
            x = self.pipeline.train_batch(self.gather_train(idx), batch_draws)
            with self.autocast:
                logits = self.stack.forward_train(x)
                losses = self._losses(logits.float(), y)
            self.optimizer.zero_grad(set_to_none=True)
            losses.sum().backward()
            self.optimizer.step()
            with torch.no_grad():
                loss_sum.add_(losses.detach(), alpha=idx.shape[1])
                correct.add_((logits.argmax(-1) == y).sum(1))
            bar.step(losses)
        bar.close()
        self.steps = steps
        result = (loss_sum / n).tolist(), (correct.double() / n).tolist()  # syncs with the device
        self.train_seconds = time.perf_counter() - started
        return result

    @torch.inference_mode()
    def evaluate(self):
        """The test set through every seed: per-seed loss and accuracy (lists of K), predictions [K, N]."""
        t, m = self.cfg.train, self.test_x.shape[0]
        self.stack.train(False)
        loss_sum = torch.zeros(len(self.seeds), device=self.device)
        preds = []
        for i in range(0, m, t.eval_batch_size):
            x = self.pipeline.normalise(self.test_x[i:i + t.eval_batch_size])
            y = self.test_y[i:i + t.eval_batch_size]
            with self.autocast:
                logits = self.stack.forward_eval(x).float()
            yk = y.expand(len(self.seeds), -1)
            loss_sum += self._losses(logits, yk) * y.shape[0]
            preds.append(logits.argmax(-1))
        preds = torch.cat(preds, 1).cpu()
        acc = (preds == self.test_y.cpu()).double().mean(1)
        return (loss_sum / m).tolist(), acc.tolist(), preds


def _image_gather(x: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """A function idx [K, B] -> x[idx] that copies each image as one row.

    Indexing a channels-last tensor walks it element by element: CIFAR-10 at
    batch 128 took 105 us a step that way, 7 us with index_select over a
    [N, image] view of the same storage. The result is the same tensor.
    """
    n, shape = x.shape[0], x.shape[1:]
    if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last):
        rows, (c, h, w) = x.permute(0, 2, 3, 1).reshape(n, -1), shape
        return lambda idx: rows.index_select(0, idx.reshape(-1)).view(*idx.shape, h, w, c).permute(0, 1, 4, 2, 3)
    if x.is_contiguous():
        rows = x.reshape(n, -1)
        return lambda idx: rows.index_select(0, idx.reshape(-1)).view(*idx.shape, *shape)
    return lambda idx: x[idx]


def normalisation(cfg: RunConfig, data):
    """The study's mean/std, or the train set's own per-channel statistics."""
    c = data.train_x.shape[1]
    ds = cfg.dataset
    if ds.mean is not None and ds.std is not None:
        if len(ds.mean) != c or len(ds.std) != c:
            raise UserError(f"dataset.mean and dataset.std need {c} values (one per channel) for {ds.name}, got {len(ds.mean)} and {len(ds.std)}")
        return ds.mean, ds.std
    return data.channel_stats()
