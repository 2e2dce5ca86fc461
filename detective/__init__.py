"""detective: says what an image shows and whether it is a real photo or AI-generated."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("detective")  # pyproject.toml's, the one place it is written
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "unknown"
