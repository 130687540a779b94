"""The image formation model: inserting rendered MCs into a real background patch.

In the normalised (log-like, bright = attenuating) domain of ``intensity.robust_normalize`` an
MC's extra attenuation adds to the background. For MC ``i`` with area-averaged normalised
thickness stamp ``tau_i(x)``:

    delta(x)  = sum_i  A_i * tau_i(x)                                   (pre-blur signal)
    A_i       = s_i * sigma_i * f_morph(i) * (d_i / d_ref)^kappa * m(b_i)
    m(b)      = 1 - rho * clip(b, 0, 1)                                 (local contrast modulation)
    y(x)      = Q( b(x) + (G_blur * delta)(x) + n(x) )
    n(x)      ~ N(0, eta * sigma(x) * (G_blur * delta)(x))              (signal-dependent noise)

(The blur is applied per MC stamp, padded by three sigma, which equals blurring the sum.)

with ``s_i`` the MC's contrast level in noise units (a per-cluster level times a log-normal
per-MC factor), ``sigma`` the local high-frequency noise of the background, ``b_i`` the local
background level averaged over ``background_window_mm`` around the MC, ``G_blur`` the Gaussian
detector blur, and ``Q`` the background's own grey-level quantisation.
"""

from __future__ import annotations

import numpy as np

from . import kernels


def window_mean_at(image: np.ndarray, rows: np.ndarray, cols: np.ndarray, half: int,
                   patch: np.ndarray | None = None) -> np.ndarray:
    """Mean of ``image`` over the (2*half+1)^2 window at each point (edge pixels repeated).

    ``image`` (H, W), or (N, H, W) stacked patches with ``patch`` (K,) naming each point's
    patch; ``rows``, ``cols`` (K,) int pixels. Returns (K,) float64.
    """
    h, w = image.shape[-2:]
    off = np.arange(-half, half + 1)
    rr = np.clip(rows[:, None] + off[None, :], 0, h - 1)
    cc = np.clip(cols[:, None] + off[None, :], 0, w - 1)
    if patch is None:
        return image[rr[:, :, None], cc[:, None, :]].mean(axis=(1, 2), dtype=np.float64)
    return image[patch[:, None, None], rr[:, :, None], cc[:, None, :]].mean(axis=(1, 2), dtype=np.float64)


def contrast_modulation(level: np.ndarray, drop: float) -> np.ndarray:
    """``m(b) = 1 - drop * clip(b, 0, 1)``: contrast falls over dense (bright) background."""
    return 1.0 - drop * np.clip(level, 0.0, 1.0)


def blur_stamps(groups, sigma_px: float | np.ndarray) -> list:
    """Gaussian system blur of each rendered thickness stamp. The blur is linear, so blurring
    stamps padded by their reach and adding them equals blurring the summed canvas.

    ``sigma_px`` is one sigma (pixels) for all MCs or one per MC (indexed like the shapes); each
    stamp of a group is padded by ``m = ceil(3 * max sigma)`` of the group and convolved with its
    own separable, normalised kernel truncated at ``m`` (sigma under 0.05 px: no blur).

    Returns groups ``(index, anchor, coverage, thickness, blurred, peak)``: ``coverage`` and
    ``thickness`` keep their size, ``blurred`` (G, K + 2m, K + 2m) float32 is padded by ``m``
    pixels on each side, ``peak`` (G,) float64 is each blurred stamp's maximum.
    """
    out = []
    for index, anchor, cov, thk in groups:
        sig = np.asarray(sigma_px, np.float64)[index] if np.ndim(sigma_px) else np.full(index.size, float(sigma_px))
        m = int(np.ceil(3.0 * sig.max())) if sig.max() >= 0.05 else 0
        out.append((index, anchor, cov, thk, *kernels.blur_stamps(thk, blur_kernels(sig, m), m)))
    return out


def blur_kernels(sigma_px: np.ndarray, margin: int) -> np.ndarray:
    """Normalised Gaussian taps (G, 2m + 1) float32 for sigmas (G,) px truncated at ``margin``
    m pixels; a sigma under 0.05 px gives the identity (a single tap of 1 at the centre)."""
    t = np.arange(-margin, margin + 1, dtype=np.float64)
    safe = np.maximum(sigma_px, 0.05)[:, None]
    kern = np.exp(-0.5 * (t[None, :] / safe) ** 2)
    kern[sigma_px < 0.05] = t == 0
    return (kern / kern.sum(axis=1, keepdims=True)).astype(np.float32)


def paste(groups, amplitude: np.ndarray, patch_px: int, patch_of: np.ndarray | None = None,
          n_patches: int = 1) -> np.ndarray:
    """Add every blurred stamp ``amplitude_i * blurred_i`` into (n_patches, P, P) canvases,
    clipped at their edges.

    ``groups`` as returned by :func:`blur_stamps`; ``amplitude`` (M,) normalised units;
    ``patch_of`` (M,) the canvas of each MC (default all 0). Returns the canvases, float32,
    (P, P) when ``patch_of`` is None and ``n_patches`` is 1, else (n_patches, P, P); they are
    accumulated in float64.
    """
    p = patch_px
    canvas = np.zeros((n_patches, p, p), np.float64)
    for index, anchor, cov, _thk, blurred, _peak in groups:
        m = (blurred.shape[1] - cov.shape[1]) // 2
        kernels.paste_stamps(canvas, anchor, _canvas_of(patch_of, index), blurred, amplitude[index].astype(np.float64), m)
    canvas = canvas.astype(np.float32)
    return canvas[0] if n_patches == 1 and patch_of is None else canvas


def label_mask(groups, centres: np.ndarray, ids: np.ndarray, patch_px: int,
               patch_of: np.ndarray | None = None, n_patches: int = 1) -> np.ndarray:
    """Instance masks: a pixel belongs to MC ``i`` when at least half covered by it (the most
    covering MC wins, on a tie the larger id), and each MC's centre pixel always belongs to it.

    ``groups`` from :func:`shapes.render` or :func:`blur_stamps` (``index``, ``anchor``,
    ``coverage`` first); ``centres`` (M, 2) px; ``ids`` (M,) the labels written (per patch
    1..m). Returns (P, P) uint16, or (n_patches, P, P) with ``patch_of``."""
    p = patch_px
    mask = np.zeros((n_patches, p, p), np.uint16)
    priority = np.full((n_patches, p, p), -1.0, np.float32)
    centres = np.asarray(centres, np.float64)
    ids = np.asarray(ids, np.uint16)
    for index, anchor, cov, *_ in groups:
        kernels.label_instances(mask, priority, anchor, _canvas_of(patch_of, index), cov, ids[index],
                                np.ascontiguousarray(centres[index]))
    return mask[0] if patch_of is None and n_patches == 1 else mask


def _canvas_of(patch_of: np.ndarray | None, index: np.ndarray) -> np.ndarray:
    """(G,) int64 canvas of the MCs ``index`` (all 0 without ``patch_of``)."""
    return patch_of[index].astype(np.int64) if patch_of is not None else np.zeros(index.size, np.int64)


def add_signal_noise(
    rng: np.random.Generator,
    image: np.ndarray,
    signal: np.ndarray,
    noise_sigma: np.ndarray,
    gain: float,
) -> tuple[np.ndarray, np.ndarray]:
    """``image + signal + n`` with ``var(n) = gain * noise_sigma * signal`` where the signal is
    not negligible. Returns the result and the flat indices touched."""
    out = np.array(image, dtype=np.float32, order="C")  # a C-ordered copy: ravel() is a view
    flat_sig = np.ascontiguousarray(signal, dtype=np.float32).ravel()
    idx = kernels.signal_pixels(flat_sig, np.ascontiguousarray(noise_sigma, dtype=np.float32).ravel(), 1e-3, 1e-7)
    sig = flat_sig[idx]
    values = out.ravel()[idx] + sig
    if gain > 0 and idx.size:
        std = np.sqrt(np.float32(gain) * noise_sigma.ravel()[idx] * sig)
        values = values + std * rng.standard_normal(idx.size, dtype=np.float32)
    out.ravel()[idx] = values
    return out, idx
