"""Assemble a `StudyResults` from the store and the run folders (no training)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nnstudy.config.schema import SequentialConfig
from nnstudy.store.db import Store
from nnstudy.store.results import RunResult, StudyResults

TEST_LABELS = "test_labels.npy"


def load_results(store: Store, name: str) -> StudyResults:
    study = store.study(name)
    spec, info = study["spec"], study["info"]
    study_dir = Path(info["study_dir"])
    runs = []
    for row in store.runs(name):
        predictions = {}
        for epoch in info["report_epochs"]:
            path = row.run_dir / f"predictions-epoch{epoch}.npy"
            if path.exists():
                predictions[epoch] = np.load(path, allow_pickle=False)
        runs.append(RunResult(
            run_id=str(row.id), variant=row.variant, seed=row.seed, status=row.status, config=row.config,
            n_params=row.n_params or 0, history=store.epochs(row.id), predictions=predictions,
            error=row.error, wall_seconds=row.wall_seconds or 0.0, run_dir=row.run_dir, settings=row.settings,
            probes=store.probes(row.id),
        ))
    labels = study_dir / TEST_LABELS
    y_true = np.load(labels, allow_pickle=False) if labels.exists() else np.zeros(0, dtype=np.int64)
    # The stored table is the validated one: read back as the model, its defaults filled in one place.
    sequential = SequentialConfig.model_validate(spec["sequential"]) if spec.get("sequential") else None
    return StudyResults(
        name=name, description=spec.get("description", ""), variants=list(spec["variants"]),
        baseline=info["baseline"], seeds=list(spec["seeds"]), report_epochs=list(info["report_epochs"]),
        classes=list(info["classes"]), y_true=y_true, dataset=info["dataset"], runs=runs,
        out_dir=study_dir, settings=info.get("settings", {}), claims=list(spec.get("claims", [])),
        claim_history=store.claim_history(name), sequential=sequential, grid=spec.get("grid"),
        overrides=list(spec.get("overrides") or []),
    )
