"""nnstudy: reproducible neural-network design studies with an honest statistical verdict."""

__version__ = "0.1.0"
