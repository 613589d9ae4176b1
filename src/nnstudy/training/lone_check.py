"""Whether a run trains bit for bit the same alone as in a stack: what lets the plan split a stack of three 2 + 1.

On one thread a run trains the same numbers in any stack of two to five
members (README, Speed), but alone it takes the plain network's path, whose
kernels may round differently (a CNN with batch normalisation does). The plan
gives a run a job of its own only where that makes no difference, so that a
run's numbers never depend on the plan: checked here by training the run a
short while both ways, on one thread as a worker does, on a cut of the data
that holds full and partial batches, and comparing every number.
"""

from __future__ import annotations

import torch

from nnstudy.config.schema import RunConfig
from nnstudy.training.trainer import GroupTrainer, TrainOptions

CHECK_EPOCHS = 2


def trains_alone_as_stacked(cfg: RunConfig, data, seeds: tuple[int, int]) -> bool:
    """Train seeds[1] stacked with seeds[0] and alone, CHECK_EPOCHS epochs on a cut of `data`: the same numbers
    (losses, accuracies and test predictions, to the last bit)?"""
    batch = cfg.train.batch_size
    cut = data.subset(min(len(data.train_y), 2 * batch + max(1, batch // 2)), min(len(data.test_y), 2 * batch))
    short = cfg.model_copy(update={"train": cfg.train.model_copy(update={"epochs": CHECK_EPOCHS})})
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        stacked = _train(short, cut, list(seeds))[1]
        alone = _train(short, cut, [seeds[1]])[0]
    finally:
        torch.set_num_threads(threads)
    return stacked == alone


def _train(cfg: RunConfig, data, seeds: list[int]) -> list[tuple]:
    trainer = GroupTrainer(cfg, data, seeds, TrainOptions(progress=False, vectorize=True, probes=False))
    trainer.fit(lambda tr, predictions: None)
    return [([(e.train_loss, e.train_acc, e.test_loss, e.test_acc) for e in s.history],
             {e: p.tolist() for e, p in s.predictions.items()}) for s in trainer.states]
