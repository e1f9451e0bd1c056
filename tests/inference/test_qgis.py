"""The outputs open styled in a real QGIS (Debian's python3-qgis, run as a subprocess).

QGIS' Python bindings belong to the system Python (/usr/bin/python3), not to the project's
interpreter, so ``qgis_check.py`` runs there and reports what QGIS sees as JSON. The test skips
when that Python cannot import ``qgis.core`` (``.ci/run`` installs it where it can).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from click.testing import CliRunner
from rasterio.transform import from_origin
from test_pixel_space import HEIGHT, WIDTH, pixel_space_image

from geociss.cli.main import cli
from geociss.inference.outputs import (
    ClassStyle,
    class_profile,
    encode_probability,
    finalize_classes,
    finalize_confidence,
)
from geociss.inference.vectors import write_polygons

from fakes import tiny_isprs_bundle

pytestmark = pytest.mark.qgis

SYSTEM_PYTHON = "/usr/bin/python3"
CHECK = Path(__file__).with_name("qgis_check.py")
STYLE = ClassStyle(
    names=["impervious & roads", "building", "<low> vegetation", "tree"],
    colors=[(255, 255, 255), (0, 0, 255), (0, 255, 255), (0, 255, 0)],
)
TRANSFORM = from_origin(368000.0, 5806000.0, 0.5, 0.5)


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env["QT_QPA_PLATFORM"] = "offscreen"
    env.setdefault("XDG_RUNTIME_DIR", "/tmp")
    return env


def _qgis_available() -> tuple[bool, str]:
    if not Path(SYSTEM_PYTHON).exists():
        return False, f"{SYSTEM_PYTHON} not found"
    probe = subprocess.run(
        [SYSTEM_PYTHON, "-c", "import qgis.core"],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=120,
    )
    if probe.returncode:
        last = (probe.stderr.strip().splitlines() or ["failed"])[-1]
        return False, f"{SYSTEM_PYTHON} cannot import qgis.core ({last}); apt install python3-qgis"
    return True, ""


def _stream(path: Path, arr: np.ndarray) -> Path:
    profile = class_profile(arr.shape[1], arr.shape[0], TRANSFORM, "EPSG:32632")
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(arr, 1)
    return path


@pytest.fixture(scope="module")
def qgis_report(tmp_path_factory):
    ok, reason = _qgis_available()
    if not ok:
        pytest.skip(reason)
    root = tmp_path_factory.mktemp("qgis")
    rng = np.random.default_rng(0)
    arr = np.kron(rng.integers(0, 4, (8, 8), dtype=np.uint8), np.ones((40, 40), np.uint8))
    arr[:, :20] = 255
    classes = root / "scene_classes.tif"
    finalize_classes(_stream(root / "c.partial", arr), classes, STYLE)
    confidence = root / "scene_confidence.tif"
    prob = encode_probability(rng.uniform(0.3, 1.0, arr.shape), arr != 255)
    finalize_confidence(_stream(root / "p.partial", prob), confidence)
    gpkg = root / "scene.gpkg"
    n = write_polygons(classes, gpkg, STYLE)
    run = subprocess.run(
        [SYSTEM_PYTHON, str(CHECK), str(classes), str(gpkg), str(confidence)],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    return json.loads(run.stdout.strip().splitlines()[-1]), n


def test_class_raster_opens_with_the_paletted_sidecar(qgis_report):
    report, _ = qgis_report
    layer = report["classes"]
    assert layer["valid"] and layer["renderer"] == "paletted"
    assert layer["classes"] == [
        [i, name, color, 255]
        for i, (name, color) in enumerate(zip(STYLE.names, STYLE.hex_colors, strict=True))
    ]
    assert layer["nodata"] == 255
    assert layer["band_name"] == "Band 1: land cover class"


def test_geopackage_opens_with_its_embedded_style(qgis_report):
    report, n = qgis_report
    layer = report["vector"]
    assert layer["valid"] and layer["renderer"] == "categorizedSymbol"
    assert layer["attribute"] == "class_id"
    assert layer["categories"] == [
        [i, name, color]
        for i, (name, color) in enumerate(zip(STYLE.names, STYLE.hex_colors, strict=True))
    ]
    assert layer["features"] == n
    assert {"class_id", "class", "area_m2"} <= set(layer["fields"])
    assert layer["crs"] == "EPSG:32632"


def test_confidence_opens_as_a_probability_ramp(qgis_report):
    report, _ = qgis_report
    layer = report["confidence"]
    assert layer["valid"] and layer["renderer"] == "singlebandpseudocolor"
    assert layer["scale"] == pytest.approx(1 / 254) and layer["offset"] == 0.0
    assert layer["nodata"] == 255
    assert (layer["min"], layer["max"]) == (0.0, 1.0)


@pytest.fixture(scope="module")
def pixel_space_reports(tmp_path_factory):
    """What QGIS sees of the predict outputs of two inputs without a CRS: one without a
    geotransform, one with an explicit identity geotransform (keyed ``none`` and ``identity``)."""
    ok, reason = _qgis_available()
    if not ok:
        pytest.skip(reason)
    root = tmp_path_factory.mktemp("pixel-space")
    model = tiny_isprs_bundle().save(root / "tiny.safetensors")
    reports = {}
    for kind, transform in (("none", None), ("identity", Affine.identity())):
        image = pixel_space_image(root / f"{kind}.tif", transform)
        out = root / kind
        res = CliRunner().invoke(
            cli,
            [
                "predict",
                "--model",
                str(model),
                "--out",
                str(out),
                "--tile",
                "64",
                "--overlap",
                "16",
                "--workers",
                "0",
                "--confidence",
                "--vector",
                str(image),
            ],
        )
        assert res.exit_code == 0, res.output
        layers = [out / f"{kind}_classes.tif", out / f"{kind}.gpkg", out / f"{kind}_confidence.tif"]
        run = subprocess.run(
            [SYSTEM_PYTHON, str(CHECK), *map(str, layers), str(image)],
            capture_output=True,
            text=True,
            env=_env(),
            timeout=300,
        )
        assert run.returncode == 0, run.stderr[-2000:]
        reports[kind] = json.loads(run.stdout.strip().splitlines()[-1])
    return reports


@pytest.mark.parametrize(
    ("kind", "extent"),
    [("none", [0, -HEIGHT, WIDTH, 0]), ("identity", [0, 0, WIDTH, HEIGHT])],
)
def test_pixel_space_outputs_lie_on_the_input_in_qgis(pixel_space_reports, kind, extent):
    # QGIS draws a raster without a geotransform at y in (-H, 0) and one with the identity
    # matrix (pixel height +1) at y in (0, H): the outputs must lie where the input is drawn
    report = pixel_space_reports[kind]
    for layer in ("image", "classes", "confidence", "vector"):
        assert report[layer]["extent"] == pytest.approx(extent), layer
