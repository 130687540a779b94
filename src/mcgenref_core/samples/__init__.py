"""Small real mammograms bundled with the package (mini-MIAS; licence in MIAS-Licence.txt)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

#: name -> (file, description)
SAMPLES: dict[str, tuple[str, str]] = {
    "mdb209": ("mdb209.pgm", "mini-MIAS mdb209: right MLO, malignant calcification cluster (film, 0.2 mm)"),
    "mdb249": ("mdb249.pgm", "mini-MIAS mdb249: right MLO, dense, two calcification clusters (film, 0.2 mm)"),
    "mdb008": ("mdb008.pgm", "mini-MIAS mdb008: left MLO, normal (film, 0.2 mm)"),
}
#: the sample ``mcgenref demo`` runs on
DEMO_SAMPLE = "mdb209"


def sample_path(name: str = DEMO_SAMPLE) -> Path:
    """Path of a bundled sample file by name (``mdb209``, ``mdb249``, ``mdb008``)."""
    if name not in SAMPLES:
        raise KeyError(f"unknown sample {name!r}; choose from {', '.join(SAMPLES)}")
    return Path(str(resources.files(__name__).joinpath(SAMPLES[name][0])))


def sample_annotations() -> Path:
    """Path of the bundled ``Info.txt`` rows (mini-MIAS format) for the samples."""
    return Path(str(resources.files(__name__).joinpath("Info.txt")))
