"""Manifest cache: reuse, partial rescans, corrupted manifests, unwritable cache folders."""

from __future__ import annotations

import json
import os
import warnings

import numpy as np
import pytest

from geociss.data import manifest as manifest_mod
from geociss.data import tile_scan
from geociss.data.catalog import Catalog
from geociss.data.classes import ClassSchema
from geociss.data.manifest import cache_dir, record_from_dict, record_to_dict
from geociss.errors import UnknownLabelValueError

from fakes import random_pair, write_tif

ISPRS = ClassSchema.preset("isprs")


@pytest.fixture
def calls(monkeypatch):
    seen: list[str] = []
    original = tile_scan.scan_tile

    def counting(image, *args, **kwargs):
        seen.append(image.name)
        return original(image, *args, **kwargs)

    monkeypatch.setattr(tile_scan, "scan_tile", counting)
    return seen


def scan(root, **kw):
    return Catalog.scan(root / "images", root / "labels", ISPRS, chip_size=16, **kw)


def manifests():
    return sorted((cache_dir() / "manifests").glob("*.json"))


def touch(path, seconds=10):
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + seconds * 10**9))


def test_second_scan_reuses_every_record(tmp_path, calls):
    for i in range(3):
        random_pair(tmp_path, f"t{i}", size=40, seed=i)
    first = scan(tmp_path)
    assert len(calls) == 3 and len(manifests()) == 1
    written = manifests()[0].stat().st_mtime_ns
    calls.clear()
    second = scan(tmp_path)
    assert calls == []
    assert manifests()[0].stat().st_mtime_ns == written  # nothing changed, nothing rewritten
    for a, b in zip(first, second, strict=True):
        assert a.hist.tolist() == b.hist.tolist() and a.stats == b.stats
        assert [r.hist.tolist() for r in a.regions] == [r.hist.tolist() for r in b.regions]
        assert [r.window for r in a.regions] == [r.window for r in b.regions]
        assert a.fingerprint == b.fingerprint and a.band_indexes == b.band_indexes


def test_changed_new_and_removed_files(tmp_path, calls):
    pairs = [random_pair(tmp_path, f"t{i}", size=24, seed=i) for i in range(3)]
    scan(tmp_path)
    calls.clear()
    touch(pairs[1][1])  # label of t1
    cat = scan(tmp_path)
    assert calls == ["t1.tif"] and len(cat) == 3
    calls.clear()
    random_pair(tmp_path, "t3", size=24, seed=3)
    for p in pairs[0]:
        p.unlink()
    cat = scan(tmp_path)
    assert calls == ["t3.tif"] and [t.stem for t in cat] == ["t1", "t2", "t3"]
    assert [r.tile for r in cat.regions()] == [0] * 4 + [1] * 4 + [2] * 4
    calls.clear()
    scan(tmp_path)
    assert calls == []
    data = json.loads(manifests()[0].read_text())
    assert sorted(t["stem"] for t in data["tiles"]) == ["t1", "t2", "t3"]


def test_different_options_use_another_manifest(tmp_path, calls):
    random_pair(tmp_path, "a", size=24)
    scan(tmp_path)
    Catalog.scan(tmp_path / "images", tmp_path / "labels", ISPRS, chip_size=8)
    assert len(calls) == 2 and len(manifests()) == 2
    Catalog.scan(tmp_path / "images", tmp_path / "labels", ISPRS, chip_size=8, cache=False)
    assert len(calls) == 3 and len(manifests()) == 2


def test_corrupted_manifest_is_ignored(tmp_path, calls):
    random_pair(tmp_path, "a", size=24)
    scan(tmp_path)
    manifests()[0].write_text('{"format": "geociss-manifest", "version": 1, "tiles": [{"st')
    cat = scan(tmp_path)
    assert len(calls) == 2 and cat[0].hist.sum() == 24 * 24
    manifests()[0].write_text(json.dumps({"format": "geociss-manifest", "version": 1,
                                          "tiles": [{"stem": 1}]}))
    scan(tmp_path)
    assert len(calls) == 3


def test_unwritable_cache_warns_once_and_continues(tmp_path, monkeypatch, calls):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    monkeypatch.setenv("GEOCISS_CACHE", str(blocker / "cache"))
    monkeypatch.setattr(manifest_mod, "_warned", set())
    random_pair(tmp_path, "a", size=24)
    with pytest.warns(UserWarning, match="cannot write the scan cache"):
        cat = scan(tmp_path)
    assert len(cat) == 1
    touch(tmp_path / "images" / "a.tif")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        scan(tmp_path)
    assert len(calls) == 2


def test_failed_scan_keeps_the_good_records(tmp_path, calls):
    random_pair(tmp_path, "a", size=24, seed=1)
    _, bad = random_pair(tmp_path, "b", size=24, seed=2)
    label = np.full((24, 24), 9, np.uint8)
    write_tif(bad, label)
    with pytest.raises(UnknownLabelValueError):
        scan(tmp_path)
    write_tif(bad, label * 0)
    calls.clear()
    cat = scan(tmp_path)
    assert calls == ["b.tif"] and cat[1].hist[0] == 24 * 24


def test_record_round_trip(tmp_path):
    random_pair(tmp_path, "a", size=20, crs=None)
    rec = scan(tmp_path, cache=False)[0]
    back = record_from_dict(json.loads(json.dumps(record_to_dict(rec))))
    assert back.image == rec.image and back.label == rec.label and back.crs is None
    assert back.transform == rec.transform and back.stats == rec.stats
    assert back.hist.dtype == np.int64 and back.hist.tolist() == rec.hist.tolist()
    assert [(r.window, r.ignored) for r in back.regions] == [
        (r.window, r.ignored) for r in rec.regions
    ]
