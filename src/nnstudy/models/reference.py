"""The PyTorch CIFAR-10 tutorial's network, written as the tutorial writes it.

nnstudy builds the same network from config (model A of the `cifar10-cnn`
study); this hand-written copy is the yardstick the tests and `bench/`
compare against.
"""

import torch
from torch import nn
import torch.nn.functional as F


class TutorialNet(nn.Module):
    """conv 3->6 k5, pool, conv 6->16 k5, pool, 400->120->84->10 (62,006 parameters)."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 5)
        self.pool = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)

    def forward(self, x):
        x = self.pool(F.relu(self.conv1(x)))
        x = self.pool(F.relu(self.conv2(x)))
        x = torch.flatten(x, 1)  # flatten all dimensions except batch
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)
