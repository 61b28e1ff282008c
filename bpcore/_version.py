"""The version of bpcore (one place: pyproject.toml reads it, checkpoints record it)."""
__version__ = "0.1.0"
