"""Reading mammograms and writing results (atomically)."""

from .mammogram import Mammogram
from .readers import check_pixel_size, detect_format, read_mammogram

__all__ = ["Mammogram", "check_pixel_size", "detect_format", "read_mammogram"]
