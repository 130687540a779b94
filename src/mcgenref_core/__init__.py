"""mcgenref_core: headless microcalcification synthesis, segmentation and TT-GPR refinement.

Never imports Qt or napari. The main entry points:

- :func:`mcgenref_core.io.read_mammogram` - any mammogram file to pixels + spacing.
- :func:`mcgenref_core.breast.breast_mask` - the breast region every step works inside.
"""

from ._version import __version__

__all__ = ["__version__"]
