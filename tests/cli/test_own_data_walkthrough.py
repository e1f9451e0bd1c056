"""The README's "Your own data" walk-through runs as written on a folder of 4-band uint16 tiles.

The test takes the ```bash block after the ``<!-- own-data walkthrough -->`` marker of README.md
and runs it with ``bash -e`` in a folder holding generated data: ``tiles/`` (step 0), ``new/``
(labelled later, with built-up) and ``check/`` (scored and mapped; one tile has a nodata block,
value 0 with the nodata tag set), 4-band uint16 GeoTIFFs in EPSG:32633 at 10 m and one-band
label rasters with the raw codes of the README's schema.

The block's text is what runs. Only its training lengths are shortened: the ``geociss`` on PATH
is a wrapper that runs this checkout's CLI and appends, per command, options that make it fast
(one epoch of a few small windows, no loader processes; a later option wins over the README's).
Each call's output and exit status are kept for the assertions.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

ROOT = Path(__file__).resolve().parents[2]
MARKER = "<!-- own-data walkthrough -->"
SIZE = 128
"""Tile side in pixels."""
BLOCK = 16
"""Side of the square patches of one land-cover code."""
SIGNATURE = {
    1: (1800, 1600, 1400, 2200),  # bare soil
    2: (600, 500, 300, 150),  # water
    3: (400, 700, 350, 3500),  # broadleaf
    4: (300, 550, 300, 2600),  # conifer
    5: (1500, 1400, 1500, 1700),  # built-up
    6: (700, 1000, 600, 3000),  # grassland
}
"""Mean of each band (blue, green, red, near infrared) per raw label code."""
NODATA_BLOCK = (slice(20, 60), slice(30, 90))
"""Rows and columns of the nodata block in ``check/images/check_0.tif``."""
FAST = {
    "train": [
        "--set", "train.epochs=1", "--set", "data.samples_per_epoch=16",
        "--set", "data.patch_size=64", "--set", "data.num_workers=0",
        "--set", "train.accelerator=cpu", "--no-progress",
    ],
    "extend": [
        "--epochs", "1", "--samples-per-epoch", "16", "--patch-size", "64",
        "--num-workers", "0", "--device", "cpu", "--no-progress",
    ],
    "evaluate": ["--device", "cpu", "--no-progress"],
    "predict": ["--workers", "0"],
}  # fmt: skip
"""Options the wrapper appends to each command (speed only)."""
WRAPPER = """#!/bin/bash
# geociss of this checkout, with the test's speed options; keeps each call's output and status
n=$(printf '%02d' "$(ls "$WALK_LOGS" | wc -l)")
log="$WALK_LOGS/$n-$1"
extra=()
case "$1" in
{cases}
esac
"{python}" -m geociss "$@" "${{extra[@]}}" >"$log.out" 2>&1
status=$?
cat "$log.out"
echo "$status" >"$log.rc"
exit "$status"
"""


def readme_block() -> str:
    """The ```bash block after the walk-through marker of README.md."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "## Your own data" in text and MARKER in text
    after = text[text.index(MARKER) + len(MARKER) :]
    match = re.match(r"\s*```bash\n(.*?)\n```", after, re.S)
    assert match, "no ```bash block right after the walk-through marker"
    return match.group(1)


def write_raster(path: Path, array: np.ndarray, nodata: float | None = None) -> None:
    """A (C, H, W) array as a tiled GeoTIFF in EPSG:32633, 10 m pixels."""
    path.parent.mkdir(parents=True, exist_ok=True)
    profile = {
        "driver": "GTiff", "width": array.shape[2], "height": array.shape[1],
        "count": array.shape[0], "dtype": array.dtype.name, "crs": "EPSG:32633",
        "transform": from_origin(505000.0, 5200000.0, 10.0, 10.0), "tiled": True,
        "blockxsize": 64, "blockysize": 64, "compress": "deflate",
        **({} if nodata is None else {"nodata": nodata}),
    }  # fmt: skip
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(array)


def write_folder(root: Path, name: str, tiles: int, rng: np.random.Generator) -> None:
    """``root/name/{images,labels}/name_i.tif``: squares of the 6 codes, bands by code + noise.

    Every tile holds every code; ``check_0`` has a nodata block (0 in every band) whose label
    is 0 (not labelled), ``new_0`` an unlabelled square.
    """
    for i in range(tiles):
        blocks = rng.permutation(np.resize(np.arange(1, 7), (SIZE // BLOCK) ** 2))
        code = np.kron(blocks.reshape(SIZE // BLOCK, -1), np.ones((BLOCK, BLOCK), dtype=int))
        means = np.array([SIGNATURE[c] for c in range(1, 7)], dtype=np.float64)
        image = means[code - 1].transpose(2, 0, 1) + rng.normal(0, 60, (4, SIZE, SIZE))
        image = np.clip(image, 1, 60000).astype(np.uint16)
        label = code.astype(np.uint8)
        if (name, i) == ("check", 0):
            image[(slice(None), *NODATA_BLOCK)] = 0
            label[NODATA_BLOCK] = 0
        if (name, i) == ("new", 0):
            label[:BLOCK, :BLOCK] = 0
        write_raster(root / name / "images" / f"{name}_{i}.tif", image, nodata=0)
        write_raster(root / name / "labels" / f"{name}_{i}.tif", label[None])


@pytest.fixture(scope="module")
def walkthrough(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """Run the README block once; returns the folder and each command's output by name."""
    root = tmp_path_factory.mktemp("own-data")
    rng = np.random.default_rng(0)
    for name, tiles in (("tiles", 4), ("new", 3), ("check", 2)):
        write_folder(root, name, tiles, rng)
    bin_dir, logs = root / ".bin", root / ".logs"
    bin_dir.mkdir()
    logs.mkdir()
    cases = "\n".join(f"  {cmd}) extra=({' '.join(opts)});;" for cmd, opts in FAST.items())
    wrapper = bin_dir / "geociss"
    wrapper.write_text(WRAPPER.format(cases=cases, python=sys.executable))
    wrapper.chmod(0o755)
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
        "COLUMNS": "200",
        "WALK_LOGS": str(logs),
    }
    script = root / "walkthrough.sh"
    script.write_text(readme_block() + "\n")
    proc = subprocess.run(
        ["bash", "-e", str(script)], cwd=root, env=env, capture_output=True, text=True,
        timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    outputs: dict[str, str] = {}
    for out in sorted(logs.glob("*.out")):
        command = out.stem.split("-", 1)[1]
        rc = out.with_suffix(".rc").read_text().strip()
        outputs[command] = out.read_text()
        assert rc == "0", f"geociss {command} exited {rc}:\n{outputs[command][-4000:]}"
    return root, outputs


def tables(text: str) -> list[tuple[str, str]]:
    """(title, body) of each rich table in ``text``; the body includes header and caption.

    The title is the text right above the table (rich wraps a long one over a few lines; it may
    follow the caption of the table before).
    """
    lines, found = text.splitlines(), []
    for i, line in enumerate(lines):
        if not line.lstrip().startswith(("┏", "┌")):
            continue
        title: list[str] = []
        for above in reversed(lines[max(0, i - 3) : i]):
            if not above.strip() or re.search("[│┃└┘┗┛]", above):
                break
            title.insert(0, above.strip())
        end = next(j for j in range(i, len(lines)) if lines[j].lstrip().startswith(("└", "┗")))
        caption = []
        for extra in lines[end + 1 :]:
            if not extra.strip() or extra.lstrip().startswith(("┏", "┌")):
                break
            caption.append(extra.strip())
        found.append((" ".join(title), "\n".join(lines[i : end + 1] + caption)))
    return found


def test_readme_block_holds_every_step() -> None:
    block = readme_block()
    for command in ("scan", "train", "extend", "evaluate", "predict"):
        assert re.search(rf"^geociss {command} ", block, re.M), command
    assert "--full-labels --label-values 5" in block and "ignore_values:" in block
    assert "in_channels" not in block  # it follows the data


def test_every_command_runs_without_a_traceback(walkthrough: tuple[Path, dict[str, str]]) -> None:
    _, outputs = walkthrough
    assert list(outputs) == ["scan", "train", "extend", "evaluate", "predict"]
    for command, text in outputs.items():
        assert "Traceback" not in text, f"{command}:\n{text}"
    scan = " ".join(outputs["scan"].split())
    assert "landcover-4 (4 classes, index)" in scan and "bands │ 4 (uint16)" in scan
    assert "nodata │ 0 (4 of 4 tiles)" in scan


def test_every_printed_score_says_what_it_measures(
    walkthrough: tuple[Path, dict[str, str]],
) -> None:
    _, outputs = walkthrough
    what = {
        "train": ["IoU % on the validation tiles after each step"],
        "extend": ["new classes vs rest on held-out tiles", "old classes: kept from the input"],
        "evaluate": ["IoU % per class on every labelled pixel of 2 tile(s)"],
    }
    for command, titles in what.items():
        scored = [(t, b) for t, b in tables(outputs[command]) if re.search(r"IoU|kept %", b)]
        assert len(scored) == len(titles), f"{command}:\n{outputs[command]}"
        for (title, _), expected in zip(scored, titles, strict=True):
            assert expected in title, f"{command}: table {title!r} does not say {expected!r}"
    vs_rest = tables(outputs["extend"])[0][1]
    # new vs rest: no old or all-class mean is shown, which that data cannot measure
    assert "mIoU new (each vs rest)" in vs_rest
    assert not re.search(r"mIoU old|mIoU all|hIoU", vs_rest)
    assert "agreement, not accuracy" in " ".join(outputs["extend"].split())


def test_predict_writes_a_georeferenced_map_with_the_nodata_block(
    walkthrough: tuple[Path, dict[str, str]],
) -> None:
    root, _ = walkthrough
    for i in range(2):
        name = f"check_{i}"
        assert (root / "maps" / f"{name}_classes.qml").is_file()
        assert (root / "maps" / f"{name}.gpkg").is_file()
        with (
            rasterio.open(root / "check" / "images" / f"{name}.tif") as src,
            rasterio.open(root / "maps" / f"{name}_classes.tif") as out,
        ):
            assert (out.crs, out.transform, out.shape) == (src.crs, src.transform, src.shape)
            assert out.crs.to_epsg() == 32633 and out.nodata == 255
            classes = out.read(1)
        invalid = np.zeros(classes.shape, dtype=bool)
        if i == 0:
            invalid[NODATA_BLOCK] = True
        assert (classes[invalid] == 255).all()
        assert (classes[~invalid] < 4).all()  # every other pixel gets one of the 4 classes
