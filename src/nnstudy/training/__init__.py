"""Training: the loop, seeds trained together, per-seed losses and checkpoints."""

from nnstudy.training.trainer import GroupTrainer, TrainOptions

__all__ = ["GroupTrainer", "TrainOptions"]
