"""The study file's schema: every key, its type and its allowed values.

Validation happens once, at the edge (pydantic, `extra="forbid"`), so the
engine can trust every field it reads.
"""

from __future__ import annotations

from typing import Any, Literal, Optional

from pydantic import ConfigDict, Field, field_validator, model_validator

# A claim's schema lives in config/claims.py; its names are re-exported here, where the study's schema is read.
from nnstudy.config.claims import (CLAIM_DEFINITION, ClaimConfig, ClaimHistoryConfig, EffectConfig,  # noqa: F401
                                   claim_definition, claim_key, declared_first)
from nnstudy.config.strict import _REFERENCE, _registered, _Strict  # noqa: F401
from nnstudy.registry import (ACTIVATIONS, CLAIM_METRICS, DATASETS, INITS, LOSSES, MODELS, NORMS, OPTIMIZERS, POOLINGS,
                              SCHEDULES)

class DatasetConfig(_Strict):
    """Which images, where they live, and how they are fed to the model."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    name: str  # registry.DATASETS: digits, mnist, ..., "torchvision" (with `class`), "python" (with `factory`)
    data_dir: Optional[str] = None  # folder or archive (the root, for torchvision); --data-dir overrides
    class_: Optional[str] = Field(None, alias="class")  # a torchvision.datasets class, e.g. "SVHN"
    factory: Optional[str] = Field(None, pattern=_REFERENCE)  # "module:function" returning train and test data
    args: dict[str, Any] = Field(default_factory=dict)  # keyword arguments for the factory or the class
    subset: Optional[int] = Field(None, gt=0, description="train images to keep (fixed, seed-independent)")
    test_subset: Optional[int] = Field(None, gt=0)
    # Per-channel normalisation; None means the train set's own mean and std.
    mean: Optional[list[float]] = None
    std: Optional[list[float]] = None
    # Batch-level augmentation, done as tensor ops on the training device.
    crop_padding: int = Field(0, ge=0, le=16)
    flip: bool = False

    @field_validator("name")
    @classmethod
    def _known_dataset(cls, v):
        return _registered(DATASETS, v)

    @model_validator(mode="after")
    def _needs(self):
        for key, kind in (("class_", "torchvision"), ("factory", "python")):
            if (getattr(self, key) is None) == (self.name == kind):
                field = key.rstrip("_")
                raise ValueError(f"dataset.{field} goes with dataset.name = \"{kind}\" (and is required there)")
        return self

    @field_validator("std")
    @classmethod
    def _positive_std(cls, v):
        if v is not None and any(s <= 0 for s in v):
            raise ValueError("every std must be > 0")
        return v

    @model_validator(mode="after")
    def _mean_with_std(self):
        if (self.mean is None) != (self.std is None):
            raise ValueError("give dataset.mean and dataset.std together (or neither, to use the train set's own)")
        return self


class ModelConfig(_Strict):
    """A CNN (conv blocks then a fully connected head), an MLP, or a user's network.

    The reference CIFAR-10 networks are all `kind = "cnn"`:
    A = channels [6, 16], kernel 5, hidden [120, 84];
    B = A with norm = "batch";
    C = channels [30, 30], kernel 3, hidden [120, 84].
    `kind = "torchvision"` builds torchvision's `name` (e.g. "resnet18") with `args`;
    `kind = "python"` calls `factory(input_shape, num_classes, **args)`. On those,
    `activation`, `norm` and `init` change the built network only when set.
    """

    kind: str = "cnn"  # registry.MODELS
    name: Optional[str] = None  # torchvision model name
    factory: Optional[str] = Field(None, pattern=_REFERENCE)
    args: dict[str, Any] = Field(default_factory=dict)
    channels: list[int] = Field(default_factory=lambda: [6, 16])  # one conv block each
    kernel: int = Field(5, ge=1, le=11)
    padding: int = Field(0, ge=0, le=5)
    hidden: list[int] = Field(default_factory=lambda: [120, 84])  # fully connected widths
    activation: Optional[str] = None  # registry.ACTIVATIONS; None: relu (a user's model: its own)
    negative_slope: float = Field(0.01, ge=0, lt=1)  # for leaky_relu
    norm: Optional[str] = None  # registry.NORMS; None: "none" (a user's model: its own)
    pool: str = "max"  # registry.POOLINGS
    pool_size: int = Field(2, ge=1, le=4)
    init: str = "default"  # registry.INITS
    init_value: float = 0.05  # for init = "constant" and "constant_random_bias"; std for init = "normal"
    dropout: float = Field(0.0, ge=0, lt=1)

    @field_validator("kind", "activation", "norm", "pool", "init")
    @classmethod
    def _known_name(cls, v, info):
        registry = {"kind": MODELS, "activation": ACTIVATIONS, "norm": NORMS, "pool": POOLINGS, "init": INITS}
        return _registered(registry[info.field_name], v)

    @model_validator(mode="after")
    def _model_reference(self):
        check = MODELS.entry(self.kind).meta.get("check")
        if check is not None:
            check(self)  # e.g. torchvision: the name exists (with close matches if not)
        for key, kind in (("name", "torchvision"), ("factory", "python")):
            if (getattr(self, key) is None) == (self.kind == kind):
                raise ValueError(f"model.{key} goes with model.kind = \"{kind}\" (and is required there)")
        return self

    @property
    def built_in(self) -> bool:
        """nnstudy builds the whole network (cnn, mlp), so every key applies."""
        return not MODELS.entry(self.kind).meta.get("external", False)

    @field_validator("channels", "hidden")
    @classmethod
    def _positive_widths(cls, v):
        if any(w <= 0 for w in v):
            raise ValueError("every width must be > 0")
        return v


class TrainConfig(_Strict):
    """Optimiser, schedule, loss and the training length."""

    optimizer: str = "sgd"  # registry.OPTIMIZERS
    lr: float = Field(0.01, gt=0, le=10)
    momentum: float = Field(0.9, ge=0, lt=1)
    nesterov: bool = False
    weight_decay: float = Field(0.0, ge=0)
    batch_size: int = Field(64, gt=0)
    epochs: int = Field(5, gt=0, le=10000)
    schedule: str = "constant"  # registry.SCHEDULES
    step_size: int = Field(1, gt=0)  # epochs between decays, for schedule = "step"
    gamma: float = Field(0.1, gt=0, le=1)
    warmup_epochs: int = Field(0, ge=0)
    loss: str = "cross_entropy"  # registry.LOSSES, or "module:function" returning a per-example loss
    loss_args: dict[str, Any] = Field(default_factory=dict)  # keyword arguments for a loss factory
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    eval_batch_size: int = Field(1000, gt=0)
    precision: Literal["fp32", "bf16"] = "fp32"
    # Epochs between test-set evaluations and probes (None: every epoch up to CURVE_POINTS epochs, then
    # enough for CURVE_POINTS points); report and claim epochs, the first and the last are always evaluated.
    # Training is the same whatever it is, so it is not part of a run's identity.
    eval_every: Optional[int] = Field(None, ge=1)

    @field_validator("optimizer", "schedule", "loss")
    @classmethod
    def _known_name(cls, v, info):
        registry = {"optimizer": OPTIMIZERS, "schedule": SCHEDULES, "loss": LOSSES}[info.field_name]
        return _registered(registry, v, allow_reference=info.field_name == "loss")

    @model_validator(mode="after")
    def _nesterov_needs_momentum(self):
        if self.nesterov and (self.optimizer != "sgd" or self.momentum == 0):
            raise ValueError("nesterov = true needs optimizer = \"sgd\" and momentum > 0")
        return self


CURVE_POINTS = 100  # test-set points a long run's curves get when eval_every is left out


def evaluation_every(train: TrainConfig) -> int:
    """Epochs between a run's test-set evaluations: its `eval_every`, or one every epoch up to CURVE_POINTS epochs."""
    return train.eval_every or max(1, -(-train.epochs // CURVE_POINTS))


def evaluates(train: TrainConfig, epoch: int, also=()) -> bool:
    """Whether a run evaluates the test set (and probes) after `epoch`: on its cadence, the first and last epoch,
    and the epochs in `also` (the study's report and claim epochs)."""
    return epoch == 1 or epoch == train.epochs or epoch % evaluation_every(train) == 0 or epoch in also


class RunConfig(_Strict):
    """One variant fully resolved: what a single training run computes."""

    dataset: DatasetConfig
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    # The study file's folder: "module:function" references import from there first.
    source_dir: Optional[str] = None


LOOKS_RULE = "looks must be increasing seed counts from 2 up"


def looks_increase(looks) -> bool:
    """The one check of a sequential design's looks (study file, --looks, the boundaries' fit): 2 <= n1 < n2 < ..."""
    looks = list(looks)
    return bool(looks) and looks[0] >= 2 and all(b > a for a, b in zip(looks, looks[1:]))


class SequentialConfig(_Strict):
    """Seeds until decided: look at the comparisons after each of `looks` seeds, stop when all are decided.

    `smallest_difference` is the smallest difference worth knowing, in the metric's own unit (test
    accuracy is a fraction: 0.002 is 0.2 pp): a comparison whose interval lies inside it is "equivalent".
    """

    looks: list[int] = Field(min_length=1)
    smallest_difference: float = Field(gt=0)
    metric: Literal["test_acc", "test_loss", "train_acc", "train_loss"] = "test_acc"
    spending: Literal["pocock", "obrien-fleming"] = "pocock"

    @field_validator("looks")
    @classmethod
    def _increasing(cls, v):
        if not looks_increase(v):
            raise ValueError(f"{LOOKS_RULE}, e.g. [3, 5, 8, 12, 20]; got {v}")
        return v


class GridConfig(_Strict):
    """A grid as expanded by config/grid.py: its settings' values and each cell's coordinates, kept with the
    study so that reports, the factorial analysis and exports read them."""

    factors: dict[str, list[Any]]  # setting path -> values, in the file's order
    cells: dict[str, dict[str, Any]]  # cell (variant) name -> {setting path: value}
    exclude: list[Any] = Field(default_factory=list)
    max_cells: int = Field(64, ge=1)


class StudyConfig(_Strict):
    """A study: a baseline, named variants overriding it, and the seeds."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    description: str = ""
    seeds: list[int] = Field(min_length=1)
    baseline: Optional[str] = None
    report_epochs: list[int] = Field(default_factory=list)
    base: RunConfig
    variants: dict[str, RunConfig]
    claims: list[ClaimConfig] = Field(default_factory=list)
    sequential: Optional[SequentialConfig] = None
    grid: Optional[GridConfig] = None  # its cells are among the variants
    overrides: list[str] = Field(default_factory=list)  # the KEY=VALUE settings applied to the file, in order

    @model_validator(mode="before")
    @classmethod
    def _seeds_for_every_look(cls, data):
        """A sequential study's looks take the first n seeds; seeds beyond those listed continue from the largest."""
        if isinstance(data, dict) and isinstance(data.get("sequential"), dict) and isinstance(data.get("seeds"), list):
            looks, seeds = data["sequential"].get("looks") or [], list(data["seeds"])
            if looks and all(isinstance(n, int) for n in looks) and seeds and all(isinstance(x, int) for x in seeds):
                seeds += range(max(seeds) + 1, max(seeds) + 1 + max(0, max(looks) - len(seeds)))
                data = {**data, "seeds": seeds}
        return data

    @field_validator("seeds")
    @classmethod
    def _unique_seeds(cls, v):
        if len(set(v)) != len(v):
            raise ValueError("seeds must be unique")
        if any(s < 0 for s in v):
            raise ValueError("seeds must be >= 0")
        return v

    @model_validator(mode="after")
    def _check_references(self):
        if self.baseline is not None and self.baseline not in self.variants:
            raise ValueError(f"baseline {self.baseline!r} is not a variant; choose one of {', '.join(self.variants)}")
        if self.grid is not None and any(cell not in self.variants for cell in self.grid.cells):
            raise ValueError("every grid cell must be a variant")
        epochs = {v.train.epochs for v in self.variants.values()}
        for e in self.report_epochs:
            if e < 1 or e > min(epochs):
                raise ValueError(f"report_epochs entry {e} must be between 1 and train.epochs ({min(epochs)})")
        return self

    @model_validator(mode="after")
    def _claims_name_variants(self):
        texts = [c.text for c in self.claims]
        for i, text in enumerate(texts):
            if text in texts[:i]:
                raise ValueError(f"claims[{i}].text repeats claims[{texts.index(text)}]'s; each claim needs its own "
                                 f"text")
        keys = [c.id or c.text for c in self.claims]
        for i, key in enumerate(keys):
            if key in keys[:i]:
                raise ValueError(f"claims[{i}]'s identity {key!r} repeats claims[{keys.index(key)}]'s (an id or a "
                                 f"text); give each claim its own id")
        for i, claim in enumerate(self.claims):
            for key in ("variant", "baseline"):
                name = getattr(claim, key)
                if name is not None and name not in self.variants:
                    raise ValueError(f"claims[{i}].{key} = {name!r} is not a variant; choose one of "
                                     f"{', '.join(self.variants)}")
            names = [claim.variant] if claim.effect is None else self._effect_cells(i, claim.effect)
            last = min(self.variants[name].train.epochs for name in names)
            if claim.epoch is not None and claim.epoch > last:
                raise ValueError(f"claims[{i}].epoch = {claim.epoch} is past "
                                 f"{f'variant {claim.variant}' if claim.variant else 'the grid cells'}'s last epoch "
                                 f"({last})")
            meta = CLAIM_METRICS.entry(claim.metric.partition("@")[0]).meta
            if meta.get("resolution") == "epoch" and any(
                    evaluation_every(self.variants[n].train) > 1 for n in names + [claim.baseline or self.baseline_name]):
                raise ValueError(f"claims[{i}]: {claim.metric} reads the test set after every epoch, and these runs "
                                 f"evaluate it every few epochs; set train.eval_every = 1")
            if meta.get("report_epochs") and \
                    claim.epoch not in (None, *self.report_epochs, last):
                raise ValueError(f"claims[{i}]: {claim.metric} is measured on report epochs only; use an epoch "
                                 f"from report_epochs {self.report_epochs} or leave epoch out (the last)")
        return self

    def _effect_cells(self, i: int, effect: EffectConfig) -> list[str]:
        """The grid cells a claim's effect reads; a factor or level the grid lacks is an error naming both."""
        factors = {path: values for path, values in (self.grid.factors if self.grid else {}).items() if len(values) > 1}
        for key in ("factor", "by"):
            path = getattr(effect, key)
            if path is not None and path not in factors:
                raise ValueError(f"claims[{i}].effect.{key} = {path!r} is not a factor of the study's grid"
                                 + (f"; choose one of {', '.join(factors)}" if factors else " (the study has no grid "
                                    "of two or more levels)"))
        for key, path in (("level", effect.factor), ("reference", effect.factor), ("by_level", effect.by),
                          ("by_reference", effect.by)):
            value = getattr(effect, key)
            if path is not None and value is not None and value not in factors[path]:
                raise ValueError(f"claims[{i}].effect.{key} = {value!r} is not a level of {path}; choose one of "
                                 f"{', '.join(map(str, factors[path]))}")
        return list(self.grid.cells)

    @model_validator(mode="after")
    def _one_test_set(self):
        # Comparisons pair runs on the same test images: variants may change how the
        # training data is fed (subset, normalisation, augmentation), not the test set.
        first_name, first = next(iter(self.variants.items()))
        for name, v in self.variants.items():
            for key in ("name", "data_dir", "test_subset"):
                if getattr(v.dataset, key) != getattr(first.dataset, key):
                    raise ValueError(f"variants.{name}.dataset.{key} differs from variant {first_name}'s; every variant "
                                     f"must be tested on the same data (a variant may change subset, mean, std, "
                                     f"crop_padding and flip)")
        return self

    @property
    def baseline_name(self) -> str:
        return self.baseline or next(iter(self.variants))

    def epochs_to_report(self, variant: str) -> list[int]:
        """Report epochs for a variant: the requested ones plus its final epoch."""
        final = self.variants[variant].train.epochs
        return sorted(set(self.report_epochs) | {final})
