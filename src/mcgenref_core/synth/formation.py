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
    stamp is padded by ``m = ceil(3 * max sigma)`` and convolved with its own separable,
    normalised kernel truncated at ``m`` (sigma under 0.05 px: no blur).

    Returns groups ``(index, anchor, coverage, thickness, blurred)``: ``coverage`` and
    ``thickness`` keep their size, ``blurred`` is padded by ``m`` pixels on each side.
    """
    out = []
    for index, anchor, cov, thk in groups:
        sig = np.asarray(sigma_px, np.float64)[index] if np.ndim(sigma_px) else np.full(index.size, float(sigma_px))
        m = int(np.ceil(3.0 * sig.max())) if sig.max() >= 0.05 else 0
        if m == 0:
            out.append((index, anchor, cov, thk, thk))
            continue
        t = np.arange(-m, m + 1, dtype=np.float64)
        safe = np.maximum(sig, 0.05)[:, None]
        kern = np.exp(-0.5 * (t[None, :] / safe) ** 2)
        kern[sig < 0.05] = (t == 0)  # no blur for those
        kern = (kern / kern.sum(axis=1, keepdims=True)).astype(np.float32)
        g, k = thk.shape[0], thk.shape[1]
        padded = np.zeros((g, k + 4 * m, k + 2 * m), np.float32)  # rows padded 2m, columns m
        padded[:, 2 * m : 2 * m + k, m : m + k] = thk
        out.append((index, anchor, cov, thk, _separable_blur(padded, kern, m)))
    return out


def _separable_blur(padded: np.ndarray, kern: np.ndarray, m: int) -> np.ndarray:
    """Blur (G, K + 4m, K + 2m) stamps (rows padded by 2m, columns by m) with one symmetric
    (2m + 1)-tap kernel per stamp (``kern`` (G, 2m + 1)); returns (G, K + 2m, K + 2m) float32,
    the stamp's blur spread over a margin of m pixels on every side."""
    g, h, w = padded.shape
    taps = 2 * m + 1
    kr = kern[:, :, None, None]
    rows = kr[:, 0] * padded[:, 0 : h - 2 * m]  # (G, K + 2m, K + 2m): rows blurred
    for t in range(1, taps):
        rows += kr[:, t] * padded[:, t : t + h - 2 * m]
    cols = np.zeros((g, h - 2 * m, w + 2 * m), np.float32)
    cols[:, :, m : m + w] = rows
    out = kr[:, 0] * cols[:, :, 0:w]
    for t in range(1, taps):
        out += kr[:, t] * cols[:, :, t : t + w]
    return out


def paste(groups, amplitude: np.ndarray, patch_px: int, patch_of: np.ndarray | None = None,
          n_patches: int = 1) -> tuple[np.ndarray, list]:
    """Add every blurred stamp ``amplitude_i * blurred_i`` into (n_patches, P, P) canvases.

    ``groups`` as returned by :func:`blur_stamps`; ``patch_of`` (M,) the canvas of each MC
    (default all 0). Returns the canvases (float32; (P, P) when ``n_patches`` is 1) and, per
    group, ``(index, flat, inside, coverage)`` for the unpadded stamps (used by
    :func:`label_mask`; ``flat`` indexes the stacked canvases).
    """
    p = patch_px
    flat_parts, weight_parts, where = [], [], []
    for index, anchor, cov, _thk, blurred in groups:
        base = (patch_of[index] * (p * p))[:, None, None] if patch_of is not None else 0
        k = cov.shape[1]
        ar = np.arange(k)
        rr = anchor[:, 0, None, None] + ar[None, :, None]
        cc = anchor[:, 1, None, None] + ar[None, None, :]
        inside = (rr >= 0) & (rr < p) & (cc >= 0) & (cc < p)
        where.append((index, base + rr * p + cc, inside, cov))
        m = (blurred.shape[1] - k) // 2
        arb = np.arange(blurred.shape[1]) - m
        rb = anchor[:, 0, None, None] + arb[None, :, None]
        cb = anchor[:, 1, None, None] + arb[None, None, :]
        inb = (rb >= 0) & (rb < p) & (cb >= 0) & (cb < p)
        flat_parts.append((base + rb * p + cb)[inb])
        weight_parts.append((blurred * amplitude[index, None, None].astype(np.float32))[inb])
    size = n_patches * p * p
    if flat_parts:
        canvas = np.bincount(np.concatenate(flat_parts), weights=np.concatenate(weight_parts), minlength=size)
        canvas = canvas.astype(np.float32)
    else:
        canvas = np.zeros(size, np.float32)
    shape = (p, p) if n_patches == 1 and patch_of is None else (n_patches, p, p)
    return canvas.reshape(shape), where


def label_mask(where: list, centres: np.ndarray, ids: np.ndarray, patch_px: int,
               patch_of: np.ndarray | None = None, n_patches: int = 1) -> np.ndarray:
    """Instance masks: a pixel belongs to MC ``i`` when at least half covered by it (the most
    covering MC wins), and each MC's centre pixel always belongs to it. ``ids`` (M,) are the
    labels written (per patch 1..m); (P, P) uint16, or (n_patches, P, P) with ``patch_of``."""
    p = patch_px
    pix, lab, pri = [], [], []
    for index, flat, inside, cov in where:
        sel = inside & (cov >= 0.5)
        pix.append(flat[sel])
        lab.append(np.broadcast_to(ids[index, None, None], flat.shape)[sel])
        pri.append(cov[sel])
    crow = np.floor(centres[:, 0]).astype(np.int64)
    ccol = np.floor(centres[:, 1]).astype(np.int64)
    base = patch_of * (p * p) if patch_of is not None else 0
    pix.append(base + crow * p + ccol)
    lab.append(ids)
    pri.append(np.full(ids.size, 2.0, np.float32))  # centre pixels outrank any coverage
    pix_a, lab_a, pri_a = np.concatenate(pix), np.concatenate(lab), np.concatenate(pri)
    order = np.lexsort((lab_a, pri_a, pix_a))  # by pixel, then priority (last wins)
    pix_s = pix_a[order]
    last = np.ones(pix_s.size, bool)
    last[:-1] = pix_s[1:] != pix_s[:-1]
    mask = np.zeros(n_patches * p * p, np.uint16)
    mask[pix_s[last]] = lab_a[order][last]
    return mask.reshape((p, p) if patch_of is None and n_patches == 1 else (n_patches, p, p))


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
    flat_sig = signal.ravel()
    idx = np.flatnonzero(flat_sig > 1e-3 * noise_sigma.ravel() + 1e-7)
    sig = flat_sig[idx]
    values = out.ravel()[idx] + sig
    if gain > 0 and idx.size:
        std = np.sqrt(np.float32(gain) * noise_sigma.ravel()[idx] * sig)
        values = values + std * rng.standard_normal(idx.size, dtype=np.float32)
    out.ravel()[idx] = values
    return out, idx
