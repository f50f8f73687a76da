"""xentropy: a REST scoring service for cross-entropy."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("xentropy")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0"
