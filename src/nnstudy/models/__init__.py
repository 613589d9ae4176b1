"""Networks built from config, with pluggable activation, norm, pooling and init."""

from nnstudy.models.build import build_model, count_parameters

__all__ = ["build_model", "count_parameters"]
