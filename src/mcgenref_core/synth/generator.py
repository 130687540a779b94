"""``SyntheticPairGenerator``: real background + simulated MC clusters -> exact (image, mask).

A positive patch gets 1-3 clusters (``clusters_weights``) plus 0..``isolated_max`` isolated
MCs; each cluster has a layout (``layout_mix``), an extent (``cluster_extent_mm``) and
``mcs_per_cluster_min`` + Geometric(mean ``mcs_per_cluster_extra_mean``) MCs (capped), each
with a morphology drawn from ``morphology_mix``. Shapes come from :mod:`.shapes`, positions
from :mod:`.layouts`, insertion from :mod:`.formation`. Everything random comes from the
``numpy.random.Generator`` passed in, so a seed fixes every byte.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from . import kernels
from .backgrounds import BackgroundPatch, BackgroundSampler
from .config import LAYOUTS, MORPHOLOGIES, SynthesisConfig
from .formation import (
    add_signal_noise,
    blur_stamps,
    contrast_modulation,
    label_mask,
    paste,
    window_mean_at,
)
from .layouts import draw_clusters
from .shapes import KIND, concat_shapes, draw_shapes, render, supersample_factor

#: Attempts to re-place an MC that fell outside the breast/patch or too near another.
PLACEMENT_TRIES = 4


@dataclass
class SyntheticPair:
    """One synthetic training pair.

    Attributes
    ----------
    image
        (P, P) float32 in the normalised intensity domain (``intensity.robust_normalize``).
    mask
        (P, P) uint16, one id per MC (1..M), 0 = no MC; the exact support before blur.
    info
        ``negative`` (bool), ``source`` (background path), ``origin``/``transform`` of the
        patch, ``gain``/``shift`` augmentation, ``blur_sigma_mm``, ``pixel_size_mm``,
        ``clusters``: list of dicts (``id``, ``layout``, ``extent_mm``, ``centre_rc``,
        ``level_snr``, ``n_mcs``, ``n_drawn``), ``mcs``: dict of (M,) arrays (``id``,
        ``cluster`` (-1 = isolated), ``kind``/``morphology`` (index/name), ``centre_rc`` (M, 2)
        px, ``size_mm``, ``amplitude`` (peak of a fully covered pixel before blur, normalised
        units), ``snr_level``, ``background`` (local level b), ``modulation`` m(b),
        ``noise_sigma``, ``boost`` (factor applied by the ``min_peak_snr`` floor)).
    background
        (P, P) float32 the augmented background before insertion.
    signal
        (P, P) float32 the blurred inserted signal before noise (zeros for negatives).
    """

    image: np.ndarray
    mask: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)
    background: np.ndarray | None = None
    signal: np.ndarray | None = None

    @property
    def n_mcs(self) -> int:
        return int(len(self.info.get("mcs", {}).get("id", ())))


class SyntheticPairGenerator:
    """Makes synthetic pairs from a :class:`BackgroundSampler` and a :class:`SynthesisConfig`."""

    def __init__(self, config: SynthesisConfig, sampler: BackgroundSampler):
        config.validate()
        self.config = config
        self.sampler = sampler
        self.pixel_size_mm = float(sampler.working_pixel_size_mm)
        if config.working_pixel_size_mm is not None and abs(config.working_pixel_size_mm - self.pixel_size_mm) > 1e-9:
            from ..errors import InputError

            raise InputError(
                "--working-pixel-size",
                f"config asks for {config.working_pixel_size_mm} mm pixels but the backgrounds were "
                f"prepared at {self.pixel_size_mm} mm",
            )
        self.supersample = supersample_factor(self.pixel_size_mm, config.supersample_mm, config.supersample_max)
        c = config
        self._cluster_p = np.asarray(c.clusters_weights, float)
        self._layout_p = np.asarray(c.layout_mix, float)
        self._morph_p = np.asarray(c.morphology_mix, float)
        self._cluster_cdf, self._layout_cdf, self._morph_cdf = (
            np.cumsum(q) / np.sum(q) for q in (self._cluster_p, self._layout_p, self._morph_p))
        # geometric draw on {0, 1, 2, ...} with mean mu: success probability 1 / (1 + mu)
        self._geom_p = 1.0 / (1.0 + c.mcs_per_cluster_extra_mean)
        morph_factor = np.ones(len(MORPHOLOGIES))
        morph_factor[KIND["amorphous"]] = c.amorphous_contrast
        self._morph_factor = morph_factor

    # ------------------------------------------------------------------------------------------
    def sample(self, rng: np.random.Generator) -> SyntheticPair:
        """One pair; every random choice is drawn from ``rng`` (the same as ``batch_pairs(1, rng)``)."""
        return self.batch_pairs(1, rng)[0]

    def _backgrounds(self, rng: np.random.Generator, n: int) -> list[tuple[BackgroundPatch, dict[str, Any]]]:
        """``n`` augmented background patches and the start of their records."""
        c = self.config
        patches = self.sampler.sample_patches(
            rng, n, c.patch_px, min_breast_fraction=c.min_breast_fraction, flips=c.augment_flips,
            gain=c.augment_gain, offset=c.augment_offset,
        )
        return [(bp, {"source": str(self.sampler.paths[bp.source]), "origin": bp.origin, "transform": bp.transform,
                      "gain": bp.gain, "shift": bp.shift, "pixel_size_mm": self.pixel_size_mm}) for bp in patches]

    def _negative(self, bp: BackgroundPatch, info: dict) -> SyntheticPair:
        p = self.config.patch_px
        info.update(negative=True, clusters=[], mcs=_empty_mcs(), blur_sigma_mm=None)
        return SyntheticPair(bp.image, np.zeros((p, p), np.uint16), info, bp.image, np.zeros((p, p), np.float32))

    # ------------------------------------------------------------------------------------------
    def plan(self, rng: np.random.Generator, breast: np.ndarray) -> dict[str, Any]:
        """Draw clusters, layouts, MC morphologies and positions for one (P, P) ``breast`` mask
        (no rendering); see :meth:`plan_many`."""
        return self.plan_many(rng, np.asarray(breast, bool)[None])

    def plan_many(self, rng: np.random.Generator, breasts: np.ndarray) -> dict[str, Any]:
        """Draw clusters, layouts, MC morphologies and positions for N patches at once.

        ``breasts`` (N, P, P) bool. Returns a dict with ``clusters`` (list of C dicts: ``id``
        (index within its patch), ``patch``, ``layout``, ``extent_mm``, ``centre_rc`` px,
        ``n_mcs``), ``cluster_patch`` (C,), ``patch`` (M,) patch of each MC, ``cluster`` (M,)
        index into ``clusters`` (-1 = isolated), ``kind`` (M,) morphology index, ``candidates``
        (R, M, 2) px centres (round 0 is where each MC goes, later rounds its fallbacks),
        ``directions`` (R, M) radians. MCs are ordered by patch, within a patch by cluster,
        isolated MCs last.
        """
        c = self.config
        px = self.pixel_size_mm
        breasts = np.asarray(breasts, bool)
        n = breasts.shape[0]
        n_clusters = 1 + _pick(rng, self._cluster_cdf, n)
        n_isolated = rng.integers(0, c.isolated_max + 1, n)
        cluster_patch = np.repeat(np.arange(n), n_clusters)
        n_cl = cluster_patch.size
        layout = _pick(rng, self._layout_cdf, n_cl)
        extent = rng.uniform(*c.cluster_extent_mm, n_cl)
        n_mcs = c.mcs_per_cluster_min + rng.geometric(self._geom_p, n_cl) - 1
        n_mcs = np.clip(n_mcs, 1, c.mcs_per_cluster_max).astype(np.int64)
        geometry = draw_clusters(rng, layout, extent)
        inside = _InsidePixels(breasts)
        cluster_centre = inside.draw(rng, cluster_patch)
        # MC order: by patch, then cluster members in cluster order, then the isolated MCs
        mc_cluster = np.concatenate([np.repeat(np.arange(n_cl), n_mcs), np.full(int(n_isolated.sum()), -1)])
        mc_patch = np.concatenate([np.repeat(cluster_patch, n_mcs), np.repeat(np.arange(n), n_isolated)])
        order = np.argsort(mc_patch * 2 + (mc_cluster < 0), kind="stable")
        mc_cluster, mc_patch = mc_cluster[order], mc_patch[order]
        m = mc_cluster.size
        kind = _pick(rng, self._morph_cdf, m)
        # linear MCs first within each cluster: placement keeps the earlier of two that clash, and a
        # long linear MC finds room less often than a speck, so the morphology mix holds
        first_linear = np.lexsort((kind != KIND["linear"], mc_cluster, mc_cluster < 0, mc_patch))
        mc_cluster, mc_patch, kind = mc_cluster[first_linear], mc_patch[first_linear], kind[first_linear]
        rounds = PLACEMENT_TRIES + 1
        candidates = np.zeros((rounds, m, 2))
        directions = np.zeros((rounds, m))
        clustered = np.flatnonzero(mc_cluster >= 0)
        if clustered.size:
            which = np.tile(mc_cluster[clustered], rounds)
            off, d = geometry.positions(rng, which)
            candidates[:, clustered] = (cluster_centre[which] + off / px).reshape(rounds, clustered.size, 2)
            directions[:, clustered] = d.reshape(rounds, clustered.size)
        isolated = np.flatnonzero(mc_cluster < 0)
        if isolated.size:
            where = inside.draw(rng, np.tile(mc_patch[isolated], rounds))
            candidates[:, isolated] = where.reshape(rounds, isolated.size, 2)
            directions[:, isolated] = rng.uniform(0, 2 * math.pi, (rounds, isolated.size))
        first = np.concatenate([[0], np.cumsum(n_clusters)[:-1]])
        clusters = [{"id": int(k - first[cluster_patch[k]]), "patch": int(cluster_patch[k]), "layout": LAYOUTS[layout[k]],
                     "extent_mm": float(extent[k]), "centre_rc": cluster_centre[k], "n_mcs": int(n_mcs[k])}
                    for k in range(n_cl)]
        return {"clusters": clusters, "cluster_patch": cluster_patch, "patch": mc_patch, "cluster": mc_cluster,
                "kind": kind, "candidates": candidates, "directions": directions, "pixel_size_mm": px}

    def _place(self, plan: dict[str, Any], shapes, breasts: np.ndarray) -> np.ndarray:
        """Keep MCs inside their patch's breast and apart from the other MCs of that patch,
        moving those that are not to their next candidate position (``plan["candidates"]``);
        when two candidates of a round clash, the earlier one is kept and the later one moves
        on. Returns the indices kept (sorted)."""
        c = self.config
        patch = plan["patch"]
        # outlines as capsules: a linear MC is its stem and branches thickened by half its width,
        # any other MC a disk of its extent (zero-length segments at its centre)
        linear = shapes.kind == KIND["linear"]
        segments = np.where(linear[:, None, None, None], shapes.segments, 0.0)
        radius = np.where(linear, shapes.width / 2.0, shapes.extent)
        gap = c.min_gap_mm / self.pixel_size_mm
        kept = kernels.place_mcs(shapes.centre, np.ascontiguousarray(plan["candidates"], dtype=np.float64),
                                 np.ascontiguousarray(patch, dtype=np.int64), np.ascontiguousarray(segments, dtype=np.float64),
                                 np.ascontiguousarray(radius, dtype=np.float64), np.ascontiguousarray(shapes.extent, dtype=np.float64),
                                 breasts, float(c.min_separation_px), float(gap))
        return np.flatnonzero(kept)

    # ------------------------------------------------------------------------------------------
    def insert(self, rng: np.random.Generator, patch: BackgroundPatch | np.ndarray) -> SyntheticPair:
        """Insert one positive draw (clusters + isolated MCs) into a given background: a
        :class:`BackgroundPatch` or a plain normalised (P, P) array (e.g. a held-out normal, for
        pixel-level evaluation on real tissue). The patch edge must equal ``config.patch_px``."""
        if not isinstance(patch, BackgroundPatch):
            patch = BackgroundPatch.from_array(patch)
        if patch.image.shape != (self.config.patch_px, self.config.patch_px):
            from ..errors import InputError

            raise InputError("patch", f"background is {patch.image.shape}, config.patch_px is {self.config.patch_px}")
        return self._positives(rng, [patch], [{"source": None, "pixel_size_mm": self.pixel_size_mm}])[0]

    def _positives(self, rng: np.random.Generator, bps: list[BackgroundPatch], infos: list[dict]) -> list[SyntheticPair]:
        """Draw, render and finish the positive patches of ``bps`` together."""
        jobs = self._draw(rng, bps, infos)
        signals, masks = self._render(jobs)
        return [self._finish(job, signals[k], masks[k]) for k, job in enumerate(jobs)]

    def _draw(self, rng: np.random.Generator, bps: list[BackgroundPatch], infos: list[dict]) -> list[dict[str, Any]]:
        """Every random choice of N positive patches, drawn for all of them at once (the noise
        through one seed per patch); one job dict per patch."""
        c = self.config
        px = self.pixel_size_mm
        p = c.patch_px
        n = len(bps)
        images = np.stack([bp.image for bp in bps])
        breasts = np.stack([bp.breast for bp in bps])
        plan = self.plan_many(rng, breasts)
        shapes = draw_shapes(rng, plan["kind"], plan["candidates"][0].copy(), px, c, plan["directions"][0])
        keep = self._place(plan, shapes, breasts)
        shapes = shapes.take(keep)
        cluster = plan["cluster"][keep]
        patch = plan["patch"][keep]
        m = len(shapes)
        # contrast: per-cluster level (isolated MCs: their own), per-MC log-normal jitter
        lo, hi = c.contrast_snr
        n_cl = len(plan["clusters"])
        levels = np.exp(rng.uniform(math.log(lo), math.log(hi), n_cl + m))
        snr = np.where(cluster >= 0, levels[np.maximum(cluster, 0)], levels[n_cl:])
        snr = snr * np.exp(rng.normal(0.0, c.contrast_jitter, m))
        rows = np.clip(np.floor(shapes.centre[:, 0]).astype(np.int64), 0, p - 1)
        cols = np.clip(np.floor(shapes.centre[:, 1]).astype(np.int64), 0, p - 1)
        half = max(1, int(round(c.background_window_mm / px / 2)))
        bg_level = window_mean_at(images, rows, cols, half, patch)
        modulation = contrast_modulation(bg_level, c.density_contrast_drop)
        sigma = np.array([bps[i].noise[r, col] for i, r, col in zip(patch.tolist(), rows.tolist(), cols.tolist())], np.float64)
        size_factor = (shapes.size_mm / c.reference_size_mm) ** c.thickness_exponent
        linear = shapes.kind == KIND["linear"]
        # a linear MC's thickness is set by its width, not its length
        size_factor = np.where(linear, (shapes.width * px / c.reference_size_mm) ** c.thickness_exponent, size_factor)
        amplitude = snr * sigma * self._morph_factor[shapes.kind] * size_factor * modulation
        source_mm = np.array([bp.source_pixel_mm for bp in bps], np.float64)
        if c.blur_sigma_mm is not None:
            blur_mm = rng.uniform(*c.blur_sigma_mm, n)
        else:  # the system blur of the background's own detector/digitiser, scaled with its spacing
            blur_mm = rng.uniform(*c.blur_sigma_source_px, n) * source_mm
        noise_seeds = rng.integers(2**63, size=n)
        jobs = []
        bounds = np.searchsorted(patch, np.arange(n + 1))
        for i in range(n):
            sel = slice(bounds[i], bounds[i + 1])
            mine = [k for k, cl in enumerate(plan["clusters"]) if cl["patch"] == i]
            first = mine[0] if mine else 0
            local_cluster = np.where(cluster[sel] >= 0, cluster[sel] - first, -1)
            jobs.append({"bp": bps[i], "info": infos[i], "clusters": [plan["clusters"][k] for k in mine],
                         "shapes": shapes.take(slice(bounds[i], bounds[i + 1])), "cluster": local_cluster,
                         "levels": levels[mine], "snr": snr[sel], "bg_level": bg_level[sel],
                         "modulation": modulation[sel], "sigma": sigma[sel], "amplitude": amplitude[sel],
                         "blur_mm": float(blur_mm[i]), "noise_seed": int(noise_seeds[i])})
        return jobs

    def _render(self, jobs: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
        """Render, blur and paste the MCs of several patches at once (no randomness here).
        Returns the blurred signals (n, P, P) float32 and masks (n, P, P) uint16; updates each
        job's ``amplitude``/``snr``/``boost`` with the visibility floor."""
        c = self.config
        p = c.patch_px
        n = len(jobs)
        counts = np.array([len(j["shapes"]) for j in jobs])
        patch_of = np.repeat(np.arange(n), counts)
        if counts.sum() == 0:
            for j in jobs:
                j["boost"] = np.ones(0)
            return np.zeros((n, p, p), np.float32), np.zeros((n, p, p), np.uint16)
        shapes = concat_shapes([j["shapes"] for j in jobs])
        amplitude = np.concatenate([j["amplitude"] for j in jobs])
        sigma = np.concatenate([j["sigma"] for j in jobs])
        blur_px = np.array([j["blur_mm"] for j in jobs])[patch_of] / self.pixel_size_mm
        groups = blur_stamps(render(shapes, self.supersample), blur_px)
        boost = np.ones(amplitude.size)
        if c.min_peak_snr > 0:
            # floor on visibility: an MC whose blurred, noise-free peak is under min_peak_snr
            # local sigmas is made denser (brighter) until it reaches the floor
            peak = np.zeros(amplitude.size)
            for index, *_stamps, group_peak in groups:
                peak[index] = group_peak
            boost = np.maximum(1.0, c.min_peak_snr * sigma / np.maximum(peak * amplitude, 1e-12))
            amplitude = amplitude * boost
        signals = paste(groups, amplitude, p, patch_of=patch_of, n_patches=n)
        ids = np.concatenate([np.arange(1, k + 1) for k in counts]).astype(np.uint16)
        masks = label_mask(groups, shapes.centre, ids, p, patch_of=patch_of, n_patches=n)
        start = np.concatenate([[0], np.cumsum(counts)])
        for i, j in enumerate(jobs):
            b = boost[start[i] : start[i + 1]]
            j["boost"] = b
            j["amplitude"] = j["amplitude"] * b
            j["snr"] = j["snr"] * b
        return signals, masks

    def _finish(self, job: dict[str, Any], signal: np.ndarray, mask: np.ndarray) -> SyntheticPair:
        """Noise, requantisation and the record of one rendered positive patch."""
        bp, info, shapes, cluster = job["bp"], job["info"], job["shapes"], job["cluster"]
        noise_rng = np.random.default_rng(job["noise_seed"])
        image, touched = add_signal_noise(noise_rng, bp.image, signal, bp.noise, self.config.noise_gain)
        if touched.size:
            flat = image.ravel()
            flat[touched] = bp.requantize(flat[touched])
        clusters = []
        for ci, cl in enumerate(job["clusters"]):
            clusters.append({"id": ci, "layout": cl["layout"], "extent_mm": cl["extent_mm"],
                             "centre_rc": cl["centre_rc"].tolist(), "level_snr": float(job["levels"][ci]),
                             "n_mcs": int(np.sum(cluster == ci)), "n_drawn": cl["n_mcs"]})
        m = len(shapes)
        info.update(
            negative=False,
            blur_sigma_mm=job["blur_mm"],
            clusters=clusters,
            mcs={
                "id": np.arange(1, m + 1, dtype=np.uint16),
                "cluster": cluster,
                "kind": shapes.kind,
                "morphology": np.array(MORPHOLOGIES)[shapes.kind],
                "centre_rc": shapes.centre,
                "size_mm": shapes.size_mm,
                "amplitude": job["amplitude"],
                "snr_level": job["snr"],
                "background": job["bg_level"],
                "modulation": job["modulation"],
                "noise_sigma": job["sigma"],
                "boost": job["boost"],
            },
        )
        return SyntheticPair(image, mask, info, bp.image, signal)

    # ------------------------------------------------------------------------------------------
    def sample_at(self, seed: int, index: int) -> SyntheticPair:
        """Pair number ``index`` of the stream seeded by ``seed`` (random access, reproducible)."""
        return self.sample(np.random.default_rng([int(seed), int(index)]))

    def batch_pairs(self, n: int, rng: np.random.Generator) -> list[SyntheticPair]:
        """``n`` pairs drawn together: first the background patches, then which are negative,
        then the MCs of all positive patches in a few vectorised draws, rendered together.
        Reproducible from ``rng``'s state; ``batch_pairs(1, rng)`` is :meth:`sample`."""
        c = self.config
        out: list[SyntheticPair | None] = [None] * n
        backgrounds = self._backgrounds(rng, n)
        negative = rng.uniform(size=n) < c.negative_fraction
        positives, where = [], []
        for i, (bp, info) in enumerate(backgrounds):
            if negative[i]:
                out[i] = self._negative(bp, info)
            else:
                positives.append((bp, info))
                where.append(i)
        if positives:
            pairs = self._positives(rng, [bp for bp, _ in positives], [info for _, info in positives])
            for i, pair in zip(where, pairs):
                out[i] = pair
        return out  # type: ignore[return-value]

    def batch(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """``n`` pairs stacked: images (n, P, P) float32, masks (n, P, P) uint16 (the same pairs
        as ``n`` calls of :meth:`sample`, rendered together)."""
        p = self.config.patch_px
        pairs = self.batch_pairs(n, rng)
        if not pairs:
            return np.zeros((0, p, p), np.float32), np.zeros((0, p, p), np.uint16)
        return np.stack([q.image for q in pairs]), np.stack([q.mask for q in pairs])


def stream_pairs(
    config: SynthesisConfig,
    sampler: BackgroundSampler,
    seed: int | None = None,
    start: int = 0,
    step: int = 1,
) -> Iterator[SyntheticPair]:
    """Endless deterministic pairs: pair ``i`` uses ``default_rng([seed, i])`` for
    ``i = start, start + step, ...`` (so ``step`` workers with ``start = 0..step-1`` share one
    stream without overlap). ``seed`` defaults to ``config.seed``."""
    gen = SyntheticPairGenerator(config, sampler)
    seed = config.seed if seed is None else int(seed)
    for i in itertools.count(start, step):
        yield gen.sample_at(seed, i)


def _pick(rng: np.random.Generator, cdf: np.ndarray, size: int | None = None):
    """Categorical draw(s) from a cumulative distribution (one uniform per draw)."""
    u = rng.uniform(size=size)
    k = np.minimum(np.searchsorted(cdf, u, side="right"), cdf.size - 1)
    return int(k) if size is None else k.astype(np.int64)


class _InsidePixels:
    """Uniform positions inside the breast of N (P, P) masks (a mask with no breast pixel
    counts as all breast).

    Draws by rejection: ``REJECTION_TRIES`` uniform points per request, the first inside the
    breast wins (patches are mostly breast, so one almost always is); a request whose tries all
    fall outside takes a uniform in-breast pixel of its patch instead. Both give a uniform
    pixel inside the breast plus a uniform sub-pixel offset.
    """

    REJECTION_TRIES = 8

    def __init__(self, breasts: np.ndarray):
        self.breasts = breasts
        self.p = breasts.shape[1]
        self.empty = ~breasts.reshape(breasts.shape[0], -1).any(axis=1)

    def draw(self, rng: np.random.Generator, patch: np.ndarray) -> np.ndarray:
        """One uniform point (row, col) px inside the breast of each entry of ``patch`` (K,);
        (K, 2) float."""
        k, p, tries = patch.size, self.p, self.REJECTION_TRIES
        points = rng.uniform(0, p, (k, tries, 2))
        cells = points.astype(np.int64)
        inside = self.breasts[patch[:, None], cells[..., 0], cells[..., 1]] | self.empty[patch][:, None]
        first = np.argmax(inside, axis=1)
        out = points[np.arange(k), first]
        for j in np.flatnonzero(~inside.any(axis=1)):  # rare: a patch with little breast
            pixels = np.flatnonzero(self.breasts[patch[j]])
            flat = pixels[rng.integers(pixels.size)]
            out[j] = np.array(divmod(int(flat), p)) + rng.uniform(0, 1, 2)
        return out


def _empty_mcs() -> dict[str, np.ndarray]:
    z = np.zeros(0)
    return {"id": np.zeros(0, np.uint16), "cluster": np.zeros(0, np.int64), "kind": np.zeros(0, np.int64),
            "morphology": np.zeros(0, dtype="<U11"), "centre_rc": np.zeros((0, 2)), "size_mm": z,
            "amplitude": z, "snr_level": z, "background": z, "modulation": z, "noise_sigma": z, "boost": z}


def mc_centres(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ids (K,) present in an instance ``mask`` and their centroids (K, 2) (row, col), pixels."""
    mask = np.asarray(mask)
    flat = mask.ravel().astype(np.int64)
    n = int(flat.max()) + 1 if flat.size else 1
    counts = np.bincount(flat, minlength=n)
    rr, cc = np.indices(mask.shape)
    sr = np.bincount(flat, weights=rr.ravel(), minlength=n)
    sc = np.bincount(flat, weights=cc.ravel(), minlength=n)
    ids = np.flatnonzero(counts)
    ids = ids[ids > 0]
    cen = np.stack([sr[ids] / counts[ids], sc[ids] / counts[ids]], -1) if ids.size else np.zeros((0, 2))
    return ids, cen


def seed_map(mask: np.ndarray, sigma_px: float = 1.0) -> np.ndarray:
    """The sparse seed of METHOD.md section 3: a Gaussian dot (peak 1, ``sigma_px``) at each MC
    centroid of an instance (or binary) ``mask``; (H, W) float32 in [0, 1]."""
    mask = np.asarray(mask)
    if mask.dtype == bool:
        mask = ndi.label(mask)[0]
    _, cen = mc_centres(mask)
    out = np.zeros(mask.shape, np.float32)
    if cen.shape[0] == 0:
        return out
    r = np.clip(np.rint(cen[:, 0]).astype(np.int64), 0, mask.shape[0] - 1)
    c = np.clip(np.rint(cen[:, 1]).astype(np.int64), 0, mask.shape[1] - 1)
    out[r, c] = 1.0
    if sigma_px > 0:
        out = ndi.gaussian_filter(out, sigma_px, truncate=3.0) * np.float32(2 * math.pi * sigma_px**2)
        # a sampled Gaussian's peak is not exactly 1/(2 pi s^2): rescale so isolated dots peak at 1
        ref = np.zeros((7 * int(math.ceil(sigma_px)) | 1,) * 2, np.float32)
        ref[ref.shape[0] // 2, ref.shape[1] // 2] = 1.0
        peak = float((ndi.gaussian_filter(ref, sigma_px, truncate=3.0) * np.float32(2 * math.pi * sigma_px**2)).max())
        out = np.minimum(out / np.float32(peak), 1.0)
    return out.astype(np.float32)
