#!/usr/bin/env bash
# Packaging check of napari-mcgenref: build, inspect, install, start napari.
#
#   1. python -m build: sdist and wheel into $WORK/dist
#   2. the wheel holds napari.yaml, the widgets, the bundled weights and the sample mammograms
#   3. twine check --strict passes
#   4. the wheel installs with its [all] extra into a fresh virtual environment
#   5. napari starts there under a virtual X display and opens every widget of the manifest
#
# Needs network access for pip (minutes: torch, napari, Qt) and xvfb-run. Not part of pytest.
#
#   bash tests/packaging_check.sh
#   PYTHON=/path/to/python WORK=/tmp/pkg bash tests/packaging_check.sh
#   PIP_ARGS="--extra-index-url https://download.pytorch.org/whl/cpu" bash tests/packaging_check.sh
#   PIP_ARGS="--no-index --find-links /path/to/wheelhouse" bash tests/packaging_check.sh   # offline
#   SKIP_INSTALL=1 bash tests/packaging_check.sh   # steps 1-3 only (no downloads)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
WORK="${WORK:-$(mktemp -d -t mcgenref-pkg-XXXXXX)}"
mkdir -p "$WORK"
PIP_ARGS="${PIP_ARGS:-}"
echo "packaging check in $WORK"

echo "== 1. build"
rm -rf "$WORK/dist"
"$PYTHON" -m build --outdir "$WORK/dist" "$ROOT" > "$WORK/build.log" 2>&1 || { tail -30 "$WORK/build.log"; exit 1; }
WHEEL="$(ls "$WORK"/dist/*.whl)"
echo "built $(ls "$WORK/dist" | tr '\n' ' ')"

echo "== 2. wheel contents"
"$PYTHON" - "$WHEEL" <<'EOF'
import fnmatch
import sys
import zipfile

names = zipfile.ZipFile(sys.argv[1]).namelist()
required = {
    "manifest": "napari_mcgenref/napari.yaml",
    "widgets": "napari_mcgenref/_widgets/_segment.py",
    "writer": "napari_mcgenref/_writer.py",
    "weights": "mcgenref_core/weights/*.safetensors",
    "weights registry": "mcgenref_core/weights/registry.json",
    "samples": "mcgenref_core/samples/*.pgm",
    "sample annotations": "mcgenref_core/samples/Info.txt",
    "sample licence": "mcgenref_core/samples/MIAS-Licence.txt",
    "entry point": "*.dist-info/entry_points.txt",
}
missing = [what for what, pattern in required.items() if not fnmatch.filter(names, pattern)]
for what, pattern in required.items():
    print(f"  {what:<20} {', '.join(fnmatch.filter(names, pattern)) or 'MISSING'}")
entry = zipfile.ZipFile(sys.argv[1]).read(fnmatch.filter(names, "*.dist-info/entry_points.txt")[0]).decode()
if "napari.manifest" not in entry or "napari_mcgenref:napari.yaml" not in entry:
    missing.append("napari.manifest entry point")
if missing:
    sys.exit(f"wheel lacks: {', '.join(missing)}")
EOF

echo "== 3. twine check"
"$PYTHON" -m twine check --strict "$WORK"/dist/*

if [ -n "${SKIP_INSTALL:-}" ]; then
  echo "steps 4-5 skipped (SKIP_INSTALL)"
  exit 0
fi

echo "== 4. install the wheel with [all] into a fresh environment"
rm -rf "$WORK/venv"
"$PYTHON" -m venv "$WORK/venv"
# shellcheck disable=SC2086
"$WORK/venv/bin/python" -m pip install --quiet $PIP_ARGS "${WHEEL}[all]" > "$WORK/install.log" 2>&1 \
  || { tail -30 "$WORK/install.log"; exit 1; }
"$WORK/venv/bin/python" -m pip check

echo "== 5. napari lists and opens the plugin's widgets"
cd "$WORK"  # away from the checkout: the installed copy must be the one imported
MCGENREF_DEVICE=cpu xvfb-run -a "$WORK/venv/bin/python" - <<'EOF'
import napari
import napari_mcgenref
import npe2

assert "site-packages" in napari_mcgenref.__file__, napari_mcgenref.__file__
manager = npe2.PluginManager.instance()
manager.discover()
manifest = manager.get_manifest("napari-mcgenref")
widgets = [w.display_name for w in manifest.contributions.widgets]
samples = [s.key for s in manifest.contributions.sample_data]
print(f"  plugin {manifest.name} {manifest.package_version}: widgets {widgets}; samples {samples}")
viewer = napari.Viewer(show=True)
viewer.open_sample("napari-mcgenref", "mdb209")
for name in widgets:
    _, widget = viewer.window.add_plugin_dock_widget("napari-mcgenref", name)
    print(f"  opened {name}: {type(widget).__name__}")
assert widgets == ["Synthesize", "Train", "Segment", "Evaluate", "Batch"], widgets
assert [layer.name for layer in viewer.layers][:1] == ["mdb209"]
viewer.close()
print("napari", napari.__version__, "ok")
EOF
echo "packaging check passed"
