"""napari-mcgenref: the napari plugin around :mod:`mcgenref_core`.

Importing this package is cheap: torch and the core's heavy parts are imported inside the
commands that need them.
"""

from mcgenref_core._version import __version__

__all__ = ["__version__"]
