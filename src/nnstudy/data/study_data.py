"""A study's data: each variant's dataset, decoded once per process."""

from __future__ import annotations

import json
from functools import lru_cache

from nnstudy.config.schema import DatasetConfig, RunConfig
from nnstudy.data import load_dataset


@lru_cache(maxsize=2)
def _dataset(dataset_json: str, cache_dir: str, source_dir: str | None):
    ds = DatasetConfig.model_validate_json(dataset_json)
    return load_dataset(ds.name, ds.data_dir, cache_dir, cfg=ds, source_dir=source_dir).subset(ds.subset, ds.test_subset)


def load_study_data(cfg: RunConfig, cache_dir: str):
    """The variant's dataset, decoded once per process (variants differing only in how they feed it share it)."""
    ds = cfg.dataset.model_dump(mode="json", by_alias=True, exclude={"mean", "std", "crop_padding", "flip"})
    return _dataset(json.dumps(ds, sort_keys=True), str(cache_dir), cfg.source_dir)
