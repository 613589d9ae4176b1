"""A user's network: any torchvision classification model, or a Python factory.

The study file stays data: `model.name` / `model.factory` are names, imported
only when the study runs. nnstudy's own `activation`, `norm` and `init` keys
change such a network only where the study sets them (init: every Conv2d and
Linear; activation: every ReLU-family module; norm "none": every BatchNorm).
"""

from __future__ import annotations

import difflib
import functools

from torch import nn

from nnstudy.errors import UserError
from nnstudy.models.layers import activation
from nnstudy.registry import MODELS, import_reference


@functools.lru_cache(maxsize=1)
def torchvision_models() -> tuple[str, ...]:
    """Classification models torchvision builds (not detection, segmentation, video)."""
    import torchvision.models as tvm

    return tuple(tvm.list_models(module=tvm))


def _check_torchvision(cfg) -> None:
    if cfg.name is not None and cfg.name not in torchvision_models():
        close = difflib.get_close_matches(cfg.name, torchvision_models(), n=3, cutoff=0.6)
        hint = f"did you mean {' or '.join(map(repr, close))}? " if close else ""
        raise ValueError(f"{cfg.name!r} is not a torchvision classification model; {hint}"
                         "see torchvision.models.list_models()")


@MODELS.register("torchvision", external=True, check=_check_torchvision)
def _torchvision(cfg, input_shape, n_classes, source_dir=None) -> nn.Module:
    import torchvision.models as tvm

    try:
        model = tvm.get_model(cfg.name, weights=None, num_classes=n_classes, **cfg.args)
    except (TypeError, ValueError) as exc:
        raise UserError(f"model.args for torchvision {cfg.name}: {exc}; see its signature in torchvision's "
                        "documentation") from None
    return _adapt(cfg, model)


@MODELS.register("python", external=True)
def _python(cfg, input_shape, n_classes, source_dir=None) -> nn.Module:
    factory = import_reference(cfg.factory, "model.factory", source_dir)
    try:
        model = factory(tuple(input_shape), n_classes, **cfg.args)
    except Exception as exc:
        raise UserError(f"model.factory {cfg.factory} raised {type(exc).__name__}: {exc}") from None
    if not isinstance(model, nn.Module):
        raise UserError(f"model.factory {cfg.factory} returned {type(model).__name__}, not a torch.nn.Module; "
                        "return the network")
    return _adapt(cfg, model)


# What `model.activation` replaces in a user's network: the piecewise-linear and smooth ReLU family.
_RELU_FAMILY = (nn.ReLU, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU)


def _adapt(cfg, model: nn.Module) -> nn.Module:
    """Apply the study's activation and norm to a user's network, where the study sets them."""
    if cfg.activation is not None:
        _replace(model, _RELU_FAMILY, lambda m: activation(cfg.activation, cfg.negative_slope))
    if cfg.norm == "none":
        _replace(model, (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d), lambda m: nn.Identity())
    elif cfg.norm is not None and not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        raise UserError(f"model.norm = {cfg.norm!r} cannot be added to a {cfg.kind} model; pass its own "
                        "normalisation through model.args, or use norm = \"none\" to remove BatchNorm")
    return model


def _replace(model: nn.Module, types: tuple, make) -> None:
    for name, child in list(model.named_children()):
        if isinstance(child, types):
            setattr(model, name, make(child))
        else:
            _replace(child, types, make)
