"""``SynthesisConfig``: every parameter of the synthetic pair generator, with its default.

Defaults follow METHOD.md section 1 unless the field's help says otherwise; the contrast
defaults are calibrated against real mini-MIAS clusters (see ``docs/synthesis.md``). All
physical sizes are in millimetres and are converted to pixels with the working pixel size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..config import StepConfig
from ..errors import InputError

#: BI-RADS morphology classes, in the order of ``SynthesisConfig.morphology_mix``.
MORPHOLOGIES = ("punctate", "amorphous", "pleomorphic", "linear", "coarse")
#: Cluster layouts, in the order of ``SynthesisConfig.layout_mix``.
LAYOUTS = ("compact", "loose", "linear")


def _f(default, help_text: str):
    """A dataclass field with a help text (shown by ``--help`` and the widget)."""
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: default, metadata={"help": help_text})
    return field(default=default, metadata={"help": help_text})


@dataclass
class SynthesisConfig(StepConfig):
    """Settings of the synthetic MC-cluster generator (METHOD.md section 1)."""

    # --- patches and sampling ------------------------------------------------------------
    patch_px: int = _f(128, "patch edge in pixels at the working pixel size")
    working_pixel_size_mm: float | None = _f(None, "pixel size of the patches in mm (None: the first background's)")
    seed: int = _f(0, "random seed; the same seed gives the same pairs")
    negative_fraction: float = _f(0.4, "share of patches without any MC (METHOD.md: 30-50%)")
    min_breast_fraction: float = _f(0.6, "least share of a patch inside the breast mask")
    augment_flips: bool = _f(True, "random flips and 90-degree turns of the background")
    augment_gain: tuple[float, float] = _f((0.9, 1.1), "range of the background intensity gain")
    augment_offset: tuple[float, float] = _f((-0.05, 0.05), "range of the background intensity offset (normalised units)")
    # --- cluster layout ----------------------------------------------------------------------
    clusters_weights: tuple[float, float, float] = _f((0.70, 0.25, 0.05), "probability of 1, 2, 3 clusters in a positive patch")
    isolated_max: int = _f(3, "isolated MCs per positive patch: uniform 0..isolated_max")
    mcs_per_cluster_min: int = _f(3, "MCs per cluster: this many plus a geometric draw")
    mcs_per_cluster_extra_mean: float = _f(6.0, "mean of the geometric draw added to mcs_per_cluster_min")
    mcs_per_cluster_max: int = _f(30, "cap on MCs per cluster")
    cluster_extent_mm: tuple[float, float] = _f((2.0, 10.0), "cluster diameter range in mm (uniform)")
    layout_mix: tuple[float, float, float] = _f((0.5, 0.3, 0.2), "probabilities of the compact, loose, linear/segmental layouts")
    min_separation_px: float = _f(2.0, "least distance between two MC centres in pixels (keeps one mask id per MC)")
    min_gap_mm: float = _f(0.2, "least gap between the outlines (bounding circles) of two MCs, mm")
    # --- morphology ----------------------------------------------------------------------------
    morphology_mix: tuple[float, float, float, float, float] = _f(
        (0.40, 0.20, 0.25, 0.10, 0.05),
        "probabilities of punctate, amorphous, fine pleomorphic, fine-linear/branching, coarse")
    punctate_diameter_mm: tuple[float, float] = _f((0.1, 0.5), "punctate/round diameter range in mm (log-uniform)")
    amorphous_diameter_mm: tuple[float, float] = _f((0.08, 0.2), "amorphous diameter range in mm (log-uniform)")
    pleomorphic_diameter_mm: tuple[float, float] = _f((0.1, 0.5), "fine pleomorphic diameter range in mm (log-uniform)")
    linear_width_mm: tuple[float, float] = _f((0.1, 0.4), "fine-linear width range in mm (log-uniform)")
    linear_length_mm: tuple[float, float] = _f((1.0, 3.0), "fine-linear/branching length range in mm (uniform)")
    coarse_diameter_mm: tuple[float, float] = _f((0.5, 1.0), "coarse diameter range in mm (uniform)")
    # --- formation -------------------------------------------------------------------------------
    contrast_snr: tuple[float, float] = _f(
        (6.0, 30.0), "per-cluster contrast level in units of the local noise sigma (log-uniform)")
    contrast_jitter: float = _f(0.3, "per-MC spread of the contrast around its cluster's level (log-normal sigma)")
    amorphous_contrast: float = _f(0.5, "contrast factor of amorphous MCs (faint)")
    thickness_exponent: float = _f(0.5, "contrast grows as (size / reference_size_mm) ** exponent")
    reference_size_mm: float = _f(0.3, "MC size whose contrast equals the drawn level")
    density_contrast_drop: float = _f(0.6, "contrast factor is 1 - drop * b over background level b in [0, 1]")
    background_window_mm: float = _f(1.0, "window over which the local background level b is averaged, mm")
    blur_sigma_source_px: tuple[float, float] = _f(
        (0.5, 1.0), "Gaussian system blur sigma range in pixels of the background's own spacing (uniform per patch)")
    blur_sigma_mm: tuple[float, float] | None = _f(None, "blur sigma range in mm, overriding blur_sigma_source_px")
    min_peak_snr: float = _f(4.0, "floor on each MC's blurred noise-free peak, in local noise sigmas (0: no floor)")
    noise_gain: float = _f(0.1, "signal-dependent noise: extra variance = gain * signal * sigma")
    supersample_mm: float = _f(0.025, "sub-pixel size used to render MCs, mm (supersampling factor from it)")
    supersample_max: int = _f(8, "cap on the supersampling factor")

    def validate(self) -> None:
        """Raise ``InputError`` naming the first impossible field."""
        src = "synthesis config"

        def bad(name: str, problem: str) -> InputError:
            return InputError(src, f"{name}: {problem}")

        if not 16 <= int(self.patch_px) <= 4096:
            raise bad("patch_px", f"must be 16-4096 pixels, got {self.patch_px}")
        if self.working_pixel_size_mm is not None:
            w = self.working_pixel_size_mm
            if not (isinstance(w, (int, float)) and math.isfinite(w) and 0 < w <= 5):
                raise InputError("--working-pixel-size", f"pixel size must be a positive number of mm, got {w!r}")
        for name in ("negative_fraction", "min_breast_fraction"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise bad(name, f"must lie in 0-1, got {v}")
        for name, n in (("clusters_weights", 3), ("layout_mix", 3), ("morphology_mix", 5)):
            mix = getattr(self, name)
            if len(mix) != n or any((not math.isfinite(p)) or p < 0 for p in mix) or not abs(sum(mix) - 1) < 1e-6:
                raise bad(name, f"must be {n} non-negative probabilities summing to 1, got {tuple(mix)}")
        ranges = ("augment_gain", "augment_offset", "cluster_extent_mm", "punctate_diameter_mm",
                  "amorphous_diameter_mm", "pleomorphic_diameter_mm", "linear_width_mm",
                  "linear_length_mm", "coarse_diameter_mm", "contrast_snr", "blur_sigma_source_px",
                  "blur_sigma_mm")
        for name in ranges:
            if getattr(self, name) is None and name == "blur_sigma_mm":
                continue
            lo, hi = getattr(self, name)
            if not (math.isfinite(lo) and math.isfinite(hi) and lo <= hi):
                raise bad(name, f"must be a (low, high) pair with low <= high, got {(lo, hi)}")
            if name not in ("augment_offset",) and (lo < 0 or (not name.startswith("blur") and lo <= 0)):
                raise bad(name, f"must be positive, got {(lo, hi)}")
        if self.augment_gain[0] <= 0:
            raise bad("augment_gain", "gain must be positive")
        for name in ("isolated_max", "mcs_per_cluster_min", "mcs_per_cluster_max", "supersample_max"):
            if getattr(self, name) < 0:
                raise bad(name, "must not be negative")
        if self.mcs_per_cluster_max < max(1, self.mcs_per_cluster_min):
            raise bad("mcs_per_cluster_max", "must be at least mcs_per_cluster_min (and 1)")
        if self.supersample_max < 1:
            raise bad("supersample_max", "must be at least 1")
        for name in ("mcs_per_cluster_extra_mean", "contrast_jitter", "thickness_exponent", "noise_gain",
                     "min_separation_px", "min_peak_snr", "min_gap_mm"):
            if not (math.isfinite(getattr(self, name)) and getattr(self, name) >= 0):
                raise bad(name, "must be a non-negative number")
        for name in ("reference_size_mm", "background_window_mm", "supersample_mm"):
            if not (math.isfinite(getattr(self, name)) and getattr(self, name) > 0):
                raise bad(name, "must be a positive number of mm")
        if self.amorphous_contrast < 0.0:
            raise bad("amorphous_contrast", "must not be negative")
        if not 0.0 <= self.density_contrast_drop <= 1.0:
            raise bad("density_contrast_drop", "must lie in 0-1")

    def __post_init__(self) -> None:
        # tuples stay tuples even when given lists (JSON, CLI)
        for name in ("augment_gain", "augment_offset", "clusters_weights", "cluster_extent_mm", "layout_mix",
                     "morphology_mix", "punctate_diameter_mm", "amorphous_diameter_mm",
                     "pleomorphic_diameter_mm", "linear_width_mm", "linear_length_mm",
                     "coarse_diameter_mm", "contrast_snr", "blur_sigma_source_px", "blur_sigma_mm"):
            value = getattr(self, name)
            if isinstance(value, list):
                setattr(self, name, tuple(value))
