"""The xentropy HTTP service: FastAPI on top of the ``xentropy`` library."""

from xentropy import __version__

__all__ = ["__version__"]
