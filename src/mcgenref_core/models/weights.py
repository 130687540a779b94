"""Weights files: safetensors with JSON metadata, a small registry, hash checks.

A weights file is a safetensors file (tensors only; loading it never executes code) whose
header metadata holds one key, ``"mcgenref"``, a JSON object with at least:

- ``kind``: ``"segmentor"`` or ``"flow"``
- ``architecture``: ``{"name": "UNet", "kwargs": {...}}`` (rebuilds the module)
- ``working_pixel_size_mm``: the pixel size the model was trained at
- ``normalisation``: how inputs are normalised (see :mod:`mcgenref_core.intensity`)
- ``training``: the training config, command, data, hardware and time
- ``operating_threshold``: the probability threshold chosen on validation data (segmentors)

and optionally ``inference``: ``{"auto_precision": "fp32", "why": ...}``, the arithmetic
``--precision auto`` runs these weights in (:attr:`Weights.auto_precision`).

The bundled registry (``mcgenref_core/weights/registry.json``) maps a name to a file in the
same folder and its SHA-256, so a damaged or swapped file is refused before use.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..io.readers import sha256_file

METADATA_KEY = "mcgenref"


@dataclass
class Weights:
    """A loaded weights file: its tensors (CPU), metadata, path and SHA-256."""

    path: Path
    state_dict: dict[str, Any]
    metadata: dict[str, Any]
    sha256: str
    name: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        return str(self.metadata.get("kind", "segmentor"))

    @property
    def tensors_sha256(self) -> str:
        """SHA-256 of the tensors alone (names, dtypes, shapes, bytes; metadata left out): the
        model's identity, unchanged when only its metadata is rewritten (e.g. a calibration)."""
        if "tensors_sha256" not in self.extra:
            import torch

            digest = hashlib.sha256()
            for key in sorted(self.state_dict):
                t = self.state_dict[key].detach().cpu().contiguous()
                digest.update(f"{key}|{t.dtype}|{tuple(t.shape)}|".encode())
                digest.update(t.view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
            self.extra["tensors_sha256"] = digest.hexdigest()
        return self.extra["tensors_sha256"]

    @property
    def auto_precision(self) -> str | None:
        """The arithmetic ``--precision auto`` uses for these weights, where their metadata names
        one (``metadata["inference"]["auto_precision"]``: ``"fp32"``, ``"bf16"`` or ``"fp16"``),
        else None (the device's default, :func:`mcgenref_core.device.resolve_precision`). Weights
        whose operating point holds only in the precision it was calibrated in name it here."""
        from ..device import PRECISIONS

        inference = self.metadata.get("inference")
        value = inference.get("auto_precision") if isinstance(inference, dict) else None
        return value if value in PRECISIONS else None

    @property
    def working_pixel_size_mm(self) -> float:
        return float(self.metadata["working_pixel_size_mm"])

    def build_model(self):
        """Instantiate the architecture named in the metadata and load the tensors (eval mode).

        The architecture is first built on torch's ``meta`` device (no memory) and its tensor
        shapes compared with the file's, so damaged or hostile metadata (a width of 100000, an
        unknown argument) is refused with one ``InputError`` instead of allocating or crashing.
        """
        import torch

        from .registry_arch import build_architecture

        spec = self.metadata.get("architecture", {})
        if not isinstance(spec, dict) or not isinstance(spec.get("kwargs", {}), dict) or not _plausible_kwargs(spec.get("kwargs", {})):
            raise InputError(self.path, "weights metadata holds no usable architecture (name and plausible keyword arguments)")
        name = spec.get("name")
        try:
            with torch.device("meta"):
                skeleton = build_architecture(spec, source=str(self.path))
        except InputError:
            raise
        except Exception as exc:  # TypeError, ValueError, RuntimeError from a damaged spec
            raise InputError(self.path, f"weights metadata names a {name} that cannot be built ({type(exc).__name__}: {' '.join(str(exc).split())[:120]})") from None
        expected = {k: tuple(v.shape) for k, v in skeleton.state_dict().items()}
        found = {k: tuple(getattr(v, "shape", ())) for k, v in self.state_dict.items()}
        if expected != found:
            missing = sorted(set(expected) ^ set(found)) or sorted(k for k in expected if expected[k] != found[k])
            raise InputError(self.path, f"weights do not fit the {name} architecture their metadata names (first difference: {missing[0]})")
        model = build_architecture(spec, source=str(self.path))
        try:
            model.load_state_dict(self.state_dict, strict=True)
        except RuntimeError as exc:
            raise InputError(self.path, f"weights do not fit the {name} architecture ({str(exc).splitlines()[0][:120]})") from None
        model.eval()
        return model


#: Largest magnitude of a number in an architecture's keyword arguments (widths, depths).
_MAX_ARCH_NUMBER = 10_000


def _plausible_kwargs(value: Any) -> bool:
    """True when every number in ``value`` (nested lists/dicts too) is finite and at most
    ``_MAX_ARCH_NUMBER`` in magnitude: a depth of 10**9 would exhaust memory before torch."""
    if isinstance(value, dict):
        return all(_plausible_kwargs(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return len(value) <= _MAX_ARCH_NUMBER and all(_plausible_kwargs(v) for v in value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return abs(value) <= _MAX_ARCH_NUMBER
    return True


def save_weights(path: str | os.PathLike, state_dict: dict[str, Any], metadata: dict[str, Any]) -> Path:
    """Write tensors + metadata atomically as safetensors; returns the path."""
    from safetensors.torch import save_file

    from ..io.writers import atomic_path

    path = Path(path)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in state_dict.items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={METADATA_KEY: json.dumps(metadata, default=str)})
    return path


def _looks_like_safetensors(head: bytes, size: int) -> bool:
    """True when the first 9 bytes are a safetensors start: a little-endian u64 header length
    that fits in the file, then the header's opening brace. (The length's low byte can be
    0x80 or spell ``PK``, the starts of a pickle and a zip, so those alone prove nothing.)"""
    if len(head) < 9:
        return False
    return 8 + int.from_bytes(head[:8], "little") <= size and head[8:9] == b"{"


def load_weights(path: str | os.PathLike, expected_sha256: str | None = None, name: str | None = None) -> Weights:
    """Load a safetensors weights file; every problem becomes one ``InputError`` line.

    Refuses pickled checkpoints (``.pt``/``.pth`` are never unpickled), files whose hash
    differs from ``expected_sha256``, and files without mcgenref metadata.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise InputError(path, "weights file not found")
    if path.stat().st_size == 0:
        raise InputError(path, "weights file is empty")
    digest = sha256_file(path)
    if expected_sha256 and digest != expected_sha256:
        raise InputError(path, f"weights file is corrupt or replaced: SHA-256 {digest[:12]}… does not match the registry's {expected_sha256[:12]}…")
    with open(path, "rb") as fh:
        head = fh.read(9)
    if not _looks_like_safetensors(head, path.stat().st_size) and (head[:2] == b"PK" or head[:1] == b"\x80"):
        raise InputError(path, "is a pickled PyTorch checkpoint; only safetensors weights are loaded (they cannot execute code)")
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as fh:
            header_meta = fh.metadata() or {}
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise InputError(path, f"is not a valid safetensors weights file ({str(exc).splitlines()[0][:120]})") from None
    if METADATA_KEY not in header_meta:
        raise InputError(path, "weights file carries no mcgenref metadata (architecture, pixel size)")
    try:
        metadata = json.loads(header_meta[METADATA_KEY])
    except json.JSONDecodeError:
        raise InputError(path, "weights metadata is not valid JSON") from None
    if not isinstance(metadata, dict):
        raise InputError(path, "weights metadata is not a JSON object")
    if "working_pixel_size_mm" not in metadata:
        raise InputError(path, "weights metadata lacks working_pixel_size_mm")
    try:
        working = float(metadata["working_pixel_size_mm"])
    except (TypeError, ValueError):
        working = float("nan")
    if not 0 < working <= 5:  # also refuses NaN
        raise InputError(path, f"weights metadata has an implausible working_pixel_size_mm {metadata['working_pixel_size_mm']!r}")
    return Weights(path=path, state_dict=tensors, metadata=metadata, sha256=digest, name=name)


# --- the bundled registry -------------------------------------------------------------------

def _bundled_dir() -> Path:
    return Path(str(resources.files("mcgenref_core").joinpath("weights")))


def registry() -> dict[str, dict[str, Any]]:
    """The bundled registry: name -> {file, sha256, kind, regime, working_pixel_size_mm, ...}."""
    index = _bundled_dir() / "registry.json"
    if not index.is_file():
        return {}
    return json.loads(index.read_text())


def resolve_weights(spec: str | os.PathLike | None, kind: str = "segmentor", pixel_size_mm: float | None = None,
                    regime: str | None = None, option: str | None = None) -> Weights:
    """Load weights by registry name, by path, or the default for ``kind`` and the input.

    The default is the bundled weights of ``regime`` (``"film"`` or ``"digital"``) when given,
    else of the regime of ``pixel_size_mm`` (:func:`regime_for_pixel_size`). Weights of another
    kind (a flow generator given as the segmentor, or the reverse) raise ``InputError``;
    ``option`` names the flag that gave them in that message (default ``--weights`` or
    ``--flow-weights``).
    """
    reg = registry()
    option = option or ("--flow-weights" if kind == "flow" else "--weights")
    if spec is None:
        name = default_weights_name(kind, pixel_size_mm, regime)
        if name is None:
            raise InputError(option, f"no bundled {kind} weights in this installation; pass {option} FILE")
        spec = name
    if isinstance(spec, str) and spec in reg:
        entry = reg[spec]
        weights = load_weights(_bundled_dir() / entry["file"], expected_sha256=entry.get("sha256"), name=spec)
    else:
        path = Path(spec)
        if not path.exists() and isinstance(spec, str) and os.sep not in spec and not path.suffix:
            raise InputError(spec, f"is neither a weights file nor a bundled name ({', '.join(reg) or 'none bundled'})")
        weights = load_weights(path)
    if weights.kind != kind:
        raise InputError(weights.name or weights.path, f"is {weights.kind} weights; {option} needs {kind} weights")
    return weights


#: the regimes a bundled model serves; pixels of at least this edge (mm) are film, finer ones digital
REGIMES = ("film", "digital")
FILM_MIN_PIXEL_SIZE_MM = 0.15


def regime_for_pixel_size(pixel_size_mm: float) -> str:
    """``"film"`` for pixels of :data:`FILM_MIN_PIXEL_SIZE_MM` or more, else ``"digital"``."""
    return "film" if float(pixel_size_mm) >= FILM_MIN_PIXEL_SIZE_MM else "digital"


def default_weights_name(kind: str, pixel_size_mm: float | None, regime: str | None = None) -> str | None:
    """Registry name of the default weights of ``kind`` for ``regime``, or for an input at
    ``pixel_size_mm`` (its regime, :func:`regime_for_pixel_size`; among weights of no stated
    regime, the nearest working pixel size)."""
    candidates = {n: e for n, e in registry().items() if e.get("kind") == kind and e.get("default")}
    if not candidates:
        return None
    if regime is None and pixel_size_mm is not None:
        regime = regime_for_pixel_size(pixel_size_mm)
    same = sorted(n for n, e in candidates.items() if regime is not None and e.get("regime") == regime)
    if same:
        return same[0]
    if pixel_size_mm is None or len(candidates) == 1:
        return sorted(candidates)[0]
    return min(candidates, key=lambda n: abs(float(candidates[n]["working_pixel_size_mm"]) - pixel_size_mm) / float(candidates[n]["working_pixel_size_mm"]))


def bundle_weights(path: str | os.PathLike, name: str, default: bool = True, package_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """Copy a trained weights file into the package and record it in ``registry.json``.

    The entry holds the file name, SHA-256, kind, regime and working pixel size; with
    ``default=True`` it replaces the previous default of the same kind and regime.
    Returns the new entry.
    """
    import shutil

    from ..io.writers import atomic_path, write_json_atomic

    weights = load_weights(path)
    folder = Path(package_dir) if package_dir else _bundled_dir()
    target = folder / f"{name}.safetensors"
    with atomic_path(target) as tmp:
        shutil.copyfile(path, tmp)
    index = folder / "registry.json"
    reg = json.loads(index.read_text()) if index.is_file() else {}
    meta = weights.metadata
    entry = {
        "file": target.name,
        "sha256": sha256_file(target),
        "kind": meta.get("kind", "segmentor"),
        "regime": meta.get("regime"),
        "working_pixel_size_mm": meta["working_pixel_size_mm"],
        "default": bool(default),
        "operating_threshold": meta.get("operating_threshold"),
    }
    if default:
        for other in reg.values():
            if other.get("kind") == entry["kind"] and other.get("regime") == entry["regime"]:
                other["default"] = False
    reg[name] = entry
    write_json_atomic(index, reg)
    return entry
