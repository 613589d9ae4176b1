"""K copies of one network, one per seed, trained as a single model.

With `stacked=True` the K parameter sets (K >= 1) are stacked along a new leading
axis (`torch.func.stack_module_state`) and the forward pass runs all K at once
(`stacked_forward`: grouped convolutions and batched matmuls; `vmap` for
layers it does not know), so K small models cost about one bigger model's
kernel launches. Buffers
(BatchNorm running statistics) are stacked too, so each seed keeps its own.
Optimisers (SGD, momentum, Adam, weight decay) act element-wise, so a
standard optimiser over the stacked tensors updates each seed exactly as if
it were alone.

With `stacked=False` it holds one seed as a plain `nn.Module`, the classic
path, behind the same interface.
"""

from __future__ import annotations

import copy
from typing import Callable

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from nnstudy.training import stacked_forward
from nnstudy.training.stacking import member_runs


class SeedStack:
    def __init__(self, build: Callable[[int], nn.Module], seeds: list[int], device: torch.device, stacked: bool = True,
                 channels_last: bool = False):
        self.seeds = list(seeds)
        self.k = len(self.seeds)
        models = []
        for k, seed in enumerate(self.seeds):
            torch.manual_seed(seed)  # a seed drives its own initialisation
            models.append(build(k).to(device))  # k: the stack member (its variant may differ in init)
        self.stacked = stacked
        self.channels_last = channels_last
        self.transposed: set[str] = set()  # stacked parameters stored as [K, in, out]
        if self.stacked:
            params, buffers = stack_module_state(models)
            # Only the structure is needed: weights come in through functional_call.
            self.module = copy.deepcopy(models[0]).to("meta")
            fast = stacked_forward.supports(self.module)
            self.transposed = stacked_forward.transposed_weights(self.module) if fast else set()
            self.params = {n: self._to_stack(n, p).detach().requires_grad_() for n, p in params.items()}
            self.buffers = buffers
            # Layers without weights that differ between members (activation, pooling), as runs of members.
            self.mixed = _mixed_layers(models) if fast else {}
            if fast:
                paired = self.k == 1 and stacked_forward.alone_beside_a_copy(self.module)  # a stack of two, then
                k = 2 if paired else self.k
                cl, mixed = channels_last, stacked_forward.apart(self.module, self.mixed, k)
                forward = (lambda p, b, x, shared: stacked_forward.stacked_forward(self.module, p, b, x, k, shared, cl,
                                                                                   mixed))
                forward = stacked_forward.beside_a_copy(forward) if paired else forward
                self._train_fn = lambda p, b, x: forward(p, b, x, False)
                self._eval_fn = lambda p, b, x: forward(p, b, x, True)
            elif len({repr(m) for m in models}) > 1:
                raise ValueError("stack members that differ in layers need a Sequential of known layers "
                                 "(training/stacked_forward.py)")
            else:  # any other architecture: the generic vmap route
                self._train_fn = vmap(self._call, in_dims=(0, 0, 0))
                self._eval_fn = vmap(self._call, in_dims=(0, 0, None))
        else:
            if self.k != 1:
                raise ValueError("a non-vectorised stack holds exactly one seed")
            self.module = models[0]
            if channels_last:
                self.module.to(memory_format=torch.channels_last)
            self.params = dict(self.module.named_parameters())
            self.buffers = dict(self.module.named_buffers())
            self.mixed = {}

    def member_module(self, k: int) -> nn.Module:
        """Stack member k's network structure (its own activation and pooling where members differ)."""
        if not self.mixed:
            return self.module
        module = copy.deepcopy(self.module)
        for span, runs in self.mixed.values():
            layers = next(seq for start, stop, seq in runs if start <= k < stop)
            for name, layer in zip(span, layers):
                setattr(module, name, copy.deepcopy(layer))
        return module

    def _call(self, params, buffers, x):
        return functional_call(self.module, (params, buffers), (x,))

    def parameters(self) -> list[torch.Tensor]:
        return list(self.params.values())

    def train(self, mode: bool = True) -> None:
        self.module.train(mode)

    def forward_train(self, x: torch.Tensor) -> torch.Tensor:
        """x: [K, B, ...], one batch per seed -> logits [K, B, classes]."""
        if self.stacked:
            return self._train_fn(self.params, self.buffers, x)
        return self.module(self._layout(x[0])).unsqueeze(0)

    def _layout(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last and x.dim() == 4 else x

    def forward_eval(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, ...], the same batch for every seed -> logits [K, B, classes]."""
        if self.stacked:
            return self._eval_fn(self.params, self.buffers, x)
        return self.module(self._layout(x)).unsqueeze(0)

    # --- per-seed state, for checkpoints -------------------------------------------------
    def _to_stack(self, name: str, stacked: torch.Tensor) -> torch.Tensor:
        """[K, ...] in the plain module's layout -> the stack's layout."""
        return stacked.transpose(1, 2).contiguous() if name in self.transposed else stacked

    def _take(self, name: str, t: torch.Tensor, k: int) -> torch.Tensor:
        """Seed k's slice of a stacked tensor, in the plain module's layout, on the CPU."""
        if self.stacked:
            t = t[k].t() if name in self.transposed else t[k]
        return t.detach().cpu().clone(memory_format=torch.contiguous_format)

    def model_state(self, k: int) -> dict[str, torch.Tensor]:
        """Seed k's weights and buffers, with the same keys and shapes as the plain module's state_dict."""
        return {n: self._take(n, t, k) for n, t in {**self.params, **self.buffers}.items()}

    def load_model_states(self, states: list[dict[str, torch.Tensor]]) -> None:
        with torch.no_grad():
            for name, t in {**self.params, **self.buffers}.items():
                if self.stacked:
                    t.copy_(self._to_stack(name, torch.stack([s[name] for s in states])))
                else:
                    t.copy_(states[0][name])

    def optimizer_state(self, optimizer: torch.optim.Optimizer, k: int) -> dict[str, dict[str, torch.Tensor]]:
        """Seed k's optimiser state keyed by parameter name (momentum, Adam moments, step)."""
        out = {}
        for name, p in self.params.items():
            state = optimizer.state.get(p, {})
            out[name] = {
                key: (self._take(name, v, k) if _per_seed(v, p, self.stacked) else v.detach().clone().cpu())
                for key, v in state.items() if torch.is_tensor(v)
            }
        return out

    def load_optimizer_states(self, optimizer: torch.optim.Optimizer, states: list[dict]) -> None:
        for name, p in self.params.items():
            per_key = states[0].get(name, {})
            if not per_key:
                continue
            new = {}
            for key, first in per_key.items():
                if self.stacked and first.dim() == p.dim() - 1:  # per seed: stack it like the parameter
                    new[key] = self._to_stack(name, torch.stack([s[name][key] for s in states])).to(p.device)
                else:  # shared (Adam's step count), or the plain module's own layout
                    new[key] = first.clone().to(p.device if first.dim() else "cpu")
            optimizer.state[p] = new


def _mixed_layers(models: list[nn.Module]) -> dict[str, tuple[list[str], list[tuple[int, int, nn.Sequential]]]]:
    """Spans of layers without weights that differ between members: first name -> (names, runs).

    A run (start, stop, layers) is members [start, stop) with equal layers there.
    A span reaches from one weight layer (or Flatten) to the next: members may
    order their layers differently inside it (the builder pools before a ReLU,
    which commutes with max pooling, but after a leaky ReLU), only its ends meet.
    """
    children = [dict(m.named_children()) for m in models]
    names = list(children[0])
    if any(list(c) != names for c in children):
        raise ValueError("stack members have different layers")
    spans, span = [], []
    for name in names:
        if all(_weightless(c[name]) for c in children):
            span.append(name)
        elif span:
            spans, span = spans + [span], []
        if not _weightless(children[0][name]) and len({repr(c[name]) for c in children}) > 1:
            raise ValueError(f"stack members differ in layer {name}, which holds weights")
    spans += [span] if span else []
    mixed = {}
    for span in spans:
        runs = member_runs([repr([c[n] for n in span]) for c in children])
        if len(runs) > 1:
            mixed[span[0]] = (span, [(a, b, nn.Sequential(*[children[a][n] for n in span])) for a, b in runs])
    return mixed


def _weightless(layer: nn.Module) -> bool:
    return not isinstance(layer, nn.Flatten) and next(layer.parameters(), None) is None and \
        next(layer.buffers(), None) is None


def _per_seed(v: torch.Tensor, p: torch.Tensor, stacked: bool) -> bool:
    return not stacked or (v.dim() == p.dim() and v.shape == p.shape)
