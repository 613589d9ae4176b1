"""The results store: SQLite database, crash-safe files, and what they load into."""

from nnstudy.store.db import Store
from nnstudy.store.load import load_results
from nnstudy.store.results import EpochRow, RunResult, StudyResults

__all__ = ["EpochRow", "RunResult", "Store", "StudyResults", "load_results"]
