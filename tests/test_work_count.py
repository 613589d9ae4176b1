"""The plan's work counter (training/work_count.py) counts what torch's FlopCounterMode counts, without its cost."""

import subprocess
import sys

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves
from torch.utils.flop_counter import FlopCounterMode

from nnstudy.config.schema import ModelConfig
from nnstudy.models import build_model
from nnstudy.registry import ACTIVATIONS, NORMS, POOLINGS
from nnstudy.training.work_count import WorkCounter


class _ValuesWritten(TorchDispatchMode):
    """The values every operation writes, views excluded: the count the plan used before WorkCounter."""

    def __init__(self):
        super().__init__()
        self.elements = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if not any(r.alias_info is not None and not r.alias_info.is_write for r in func._schema.returns):
            self.elements += sum(t.numel() for t in tree_leaves(out) if torch.is_tensor(t))
        return out


def _built_in_models():
    """Every layer nnstudy builds: each pooling, normalisation and activation in a CNN, MLPs with dropout."""
    for pool in POOLINGS.names():
        yield f"cnn pool={pool}", ModelConfig(channels=[4, 6], kernel=3, padding=1, pool=pool, hidden=[10]), (1, 8, 8)
    for norm in NORMS.names():
        yield f"cnn norm={norm}", ModelConfig(channels=[4], kernel=3, norm=norm, hidden=[12]), (3, 8, 8)
        yield f"mlp norm={norm}", ModelConfig(kind="mlp", hidden=[16, 8], norm=norm), (1, 8, 8)
    for act in ACTIVATIONS.names():
        yield f"cnn activation={act}", ModelConfig(channels=[4], kernel=3, activation=act, hidden=[12]), (1, 8, 8)
    yield "mlp dropout", ModelConfig(kind="mlp", hidden=[32], dropout=0.5), (1, 8, 8)
    yield "cifar10 model A", ModelConfig(), (3, 32, 32)


@pytest.mark.parametrize("label,cfg,shape", list(_built_in_models()), ids=lambda v: v if isinstance(v, str) else "")
def test_the_counts_agree_with_torchs_counters_on_every_built_in_layer(label, cfg, shape):
    torch.manual_seed(0)
    model = build_model(cfg, shape, 10)
    x = torch.randn(2, *shape)
    with torch.no_grad(), FlopCounterMode(display=False) as torch_flops, _ValuesWritten() as written:
        model(x)
    with torch.no_grad(), WorkCounter() as work:
        model(x)
    by_op = {str(op): n for op, n in torch_flops.get_flop_counts()["Global"].items()}
    assert work.total_flops == torch_flops.get_total_flops() > 0
    assert dict(work.flops) == by_op
    assert work.elements == written.elements > 0


def test_a_users_tensor_operations_count_as_torch_counts_them():
    """Batched products written by hand (einsum, matmul, attention): what a user's network may do between layers."""
    def forward(q, w):
        scores = torch.einsum("bhqd,bhkd->bhqk", q, q).softmax(-1)
        return torch.nn.functional.scaled_dot_product_attention(scores @ q, q, q) @ w

    q, w = torch.randn(3, 2, 5, 4), torch.randn(4, 6)
    with torch.no_grad(), FlopCounterMode(display=False) as torch_flops:
        forward(q, w)
    with torch.no_grad(), WorkCounter() as work:
        forward(q, w)
    by_op = {str(op): n for op, n in torch_flops.get_flop_counts()["Global"].items()}
    assert dict(work.flops) == by_op and work.total_flops > 0


def test_counting_does_not_load_the_compiler():
    """torch's own dispatch modes import torch._dynamo (seconds of start-up) on their first operation."""
    code = ("import sys, torch\nfrom nnstudy.training.work_count import WorkCounter\n"
            "with WorkCounter() as w: torch.nn.Linear(3, 2)(torch.randn(1, 3))\n"
            "assert w.total_flops == 12, w.flops\nprint('torch._dynamo' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
