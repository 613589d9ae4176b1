"""Built-in suites: several studies run as one plan (config/suite.py reads them)."""
