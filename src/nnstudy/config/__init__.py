"""Study files: schema, loading, validation, run identity."""

from nnstudy.config.load import builtin_studies, builtin_study_text, config_hash, load_study, parse_study
from nnstudy.config.schema import DatasetConfig, ModelConfig, RunConfig, StudyConfig, TrainConfig

__all__ = [
    "DatasetConfig", "ModelConfig", "RunConfig", "StudyConfig", "TrainConfig",
    "builtin_studies", "builtin_study_text", "config_hash", "load_study", "parse_study",
]
