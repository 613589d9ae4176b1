"""nnstudy: reproducible neural-network design studies with an honest statistical verdict.

    import nnstudy
    study = nnstudy.load_study("quickstart")    # a built-in name, a .toml file or a dict
    results = study.run()                        # train what is missing, write the report
    results.comparisons()                        # pandas DataFrame: differences, Holm p, verdicts

Extension points are registries (`nnstudy.ACTIVATIONS.register("mish", ...)`, see `nnstudy.registry`).
"""

__version__ = "0.2.0"

from nnstudy.api import Results, Study, Suite, load_study, load_suite, open_results, replication  # noqa: E402
from nnstudy.errors import UserError  # noqa: E402
from nnstudy.registry import (ACTIVATIONS, DATASETS, EXECUTORS, INITS, LOSSES, MODELS, NORMS, OPTIMIZERS,  # noqa: E402
                              POOLINGS, PROBES, REPORT_SECTIONS, SCHEDULES)

__all__ = ["ACTIVATIONS", "DATASETS", "EXECUTORS", "INITS", "LOSSES", "MODELS", "NORMS", "OPTIMIZERS", "POOLINGS",
           "PROBES", "REPORT_SECTIONS", "Results", "SCHEDULES", "Study", "Suite", "UserError", "load_study", "load_suite",
           "open_results", "replication"]
