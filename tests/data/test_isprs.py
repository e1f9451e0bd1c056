"""Official ISPRS distributions: zip and extracted forms, modalities, splits, strict colours."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest
import rasterio
from fakes_isprs import colour_label, others, write_potsdam, write_vaihingen

from geociss.data.archives import fingerprint, list_members, member_path, split_member
from geociss.data.classes import ClassSchema
from geociss.data.isprs import get_dataset, official_catalog, official_pairs
from geociss.errors import ConfigError, DataError, UnknownLabelValueError

from fakes import write_tif

RGB = ClassSchema.preset("isprs-rgb")
KEEP = ("2_10", "2_11", "2_13")  # two training tiles, one test tile


def potsdam(root, split="train", modality=None, **kw):
    kw.setdefault("exclude", others("potsdam", KEEP))
    return official_catalog("potsdam", root, RGB, split, modality, cache=False, **kw)


# ---------------------------------------------------------------------------- archives


def test_member_paths_survive_path_normalisation_and_open(tmp_path):
    write_tif(tmp_path / "a.tif", np.ones((3, 8, 8), np.uint8))
    with zipfile.ZipFile(tmp_path / "x.zip", "w") as zf:
        zf.write(tmp_path / "a.tif", "deep/er/a.tif")
    path = member_path(tmp_path / "x.zip", "deep/er/a.tif")
    assert split_member(path) == (tmp_path / "x.zip", "deep/er/a.tif")
    assert split_member(tmp_path / "a.tif") is None
    with rasterio.open(path) as src:
        assert src.count == 3
    assert fingerprint(path)[0] == (tmp_path / "x.zip").stat().st_size
    assert list_members(tmp_path / "x.zip") == ["deep/er/a.tif"]
    (tmp_path / "bad.zip").write_text("not a zip")
    with pytest.raises(DataError, match="bad.zip: not a readable zip archive"):
        list_members(tmp_path / "bad.zip")


# ---------------------------------------------------------------------------- Potsdam


@pytest.mark.parametrize("zipped", [True, False], ids=["zip", "folder"])
def test_potsdam_train_and_test_split(tmp_path, zipped):
    root = write_potsdam(tmp_path, KEEP, zipped=zipped)
    train, found = potsdam(root, "train")
    assert [t.stem for t in train] == ["top_potsdam_2_10", "top_potsdam_2_11"]
    assert all(str(t.image).startswith("/vsizip/") == zipped for t in train)
    assert train[0].image.name == "top_potsdam_2_10_RGB.tif"
    assert train[0].label.name == "top_potsdam_2_10_label.tif"
    assert found.images_from.name == ("2_Ortho_RGB.zip" if zipped else "2_Ortho_RGB")
    summary = train.summary()
    assert summary["images"] == str(found.images_from)
    assert summary["labels"] == str(tmp_path / ("5_Labels_all.zip" if zipped else "5_Labels_all"))
    assert train.crs is not None and "32633" in train.summary()["crs"]
    test, _ = potsdam(root, "test")
    assert [t.stem for t in test] == ["top_potsdam_2_13"]
    everything, _ = potsdam(root, "all")
    assert len(everything) == 3


def test_potsdam_labels_map_strictly_to_idec_ids(tmp_path):
    root = write_potsdam(tmp_path, KEEP)
    cat, _ = potsdam(root)
    ids, _ = colour_label(0, 64)  # tile 2_10 was written with seed 0
    expected = np.bincount(ids.ravel(), minlength=6)
    assert cat[0].hist.tolist() == expected.tolist() and cat[0].ignored == 0
    assert RGB.names[:5] == ["impervious surfaces", "building", "low vegetation", "tree", "car"]


@pytest.mark.parametrize(("modality", "bands", "suffix"),
                         [("rgb", 3, "RGB"), ("irrg", 3, "IRRG"), ("rgbir", 4, "RGBIR")])
def test_potsdam_modality_choice(tmp_path, modality, bands, suffix):
    root = write_potsdam(tmp_path, KEEP)
    cat, found = potsdam(root, modality=modality)
    assert cat[0].bands == bands and cat[0].image.name == f"top_potsdam_2_10_{suffix}.tif"
    assert found.modality == modality


def test_unknown_modality_or_dataset_is_a_config_error(tmp_path):
    root = write_potsdam(tmp_path, KEEP, modalities=("rgb",))
    with pytest.raises(ConfigError, match="has no modality 'nir'; choose one of: rgb, irrg"):
        potsdam(root, modality="nir")
    with pytest.raises(ConfigError, match="unknown ISPRS dataset 'paris'.*potsdam, vaihingen"):
        official_pairs("paris", root)
    with pytest.raises(ConfigError, match="99_99 is not a tile of ISPRS Potsdam"):
        potsdam(root, exclude=["99_99"])


def test_missing_archive_names_what_and_where(tmp_path):
    root = write_potsdam(tmp_path, KEEP, modalities=("rgb",))
    with pytest.raises(DataError) as err:
        potsdam(root, modality="irrg")
    msg = str(err.value)
    assert "\n" not in msg and str(root) in msg
    assert "no ISPRS Potsdam irrg images" in msg and "3_Ortho_IRRG.zip" in msg
    (root / "5_Labels_all.zip").unlink()
    with pytest.raises(DataError, match="no ISPRS Potsdam labels: looked for 5_Labels_all.zip"):
        potsdam(root)
    with pytest.raises(DataError, match="dataset root folder not found"):
        potsdam(root / "nope")


def test_missing_tile_names_the_file_and_the_archive(tmp_path):
    root = write_potsdam(tmp_path, KEEP)
    with pytest.raises(DataError) as err:
        potsdam(root, exclude=None)  # the whole official split is expected
    msg = str(err.value)
    assert msg.startswith(str(root / "2_Ortho_RGB.zip"))
    assert "no top_potsdam_2_12_RGB.tif (ISPRS Potsdam tile 2_12, official train split)" in msg


def test_unknown_colour_names_the_file_and_the_colour(tmp_path):
    root = write_potsdam(tmp_path, KEEP, zipped=False)
    label = root / "5_Labels_all" / "top_potsdam_2_11_label.tif"
    with rasterio.open(label) as src:
        data = src.read()
    data[:, 5, 7] = (255, 0, 255)
    write_tif(label, data, crs="EPSG:32633", gsd=0.05)
    with pytest.raises(UnknownLabelValueError) as err:
        potsdam(root)
    assert str(err.value).startswith(str(label)) and "#ff00ff" in str(err.value)


def test_known_bad_tile_is_left_out_by_default_and_explained_if_kept(tmp_path):
    ds = get_dataset("potsdam")
    assert (len(ds.train), len(ds.test)) == (24, 14) and "4_12" in ds.train
    assert not set(ds.train) & set(ds.test)
    root = write_potsdam(tmp_path, ds.train, zipped=False, modalities=("rgb",), size=16)
    cat, found = potsdam(root, exclude=None)
    assert len(cat) == 23 and "top_potsdam_4_12" not in {t.stem for t in cat}
    assert len(found.notes) == 1 and "tile 4_12 left out" in found.notes[0]
    assert "overlay" in found.notes[0] and "exclude_tiles: []" in found.notes[0]
    label = root / "5_Labels_all" / "top_potsdam_4_12_label.tif"
    overlay = np.random.default_rng(0).integers(0, 256, (3, 16, 16), dtype=np.uint8)
    write_tif(label, overlay, crs="EPSG:32633", gsd=0.05)
    with pytest.raises(DataError) as err:
        potsdam(root, exclude=[])
    msg = str(err.value)
    assert msg.startswith(str(label)) and "overlay" in msg and "exclude_tiles" in msg
    assert "\n" not in msg


def test_eroded_labels_are_read_with_boundaries_ignored(tmp_path):
    root = write_potsdam(tmp_path, KEEP, eroded=True)
    full, _ = potsdam(root, "test")
    ero, found = potsdam(root, "test", eroded=True)
    assert ero[0].label.name == "top_potsdam_2_13_label_noBoundary.tif"
    assert found.dataset.eroded.archive == "5_Labels_all_noBoundary.zip"
    assert ero[0].ignored == 8 * 64 and full[0].ignored == 0


def test_pixel_space_tiles(tmp_path):
    cat, _ = potsdam(write_potsdam(tmp_path, KEEP, crs=None))
    assert cat.crs is None and all(not t.georeferenced for t in cat)
    assert cat.summary()["crs_note"] == "pixel space"


# ---------------------------------------------------------------------------- Vaihingen


def vaihingen(root, split="train", **kw):
    kw.setdefault("exclude", others("vaihingen", ("1", "3", "2")))
    return official_catalog("vaihingen", root, RGB, split, cache=False, **kw)


@pytest.mark.parametrize("zipped", [True, False], ids=["zip", "folder"])
def test_vaihingen_reads_top_images_and_complete_ground_truth(tmp_path, zipped):
    root = write_vaihingen(tmp_path, zipped=zipped)
    train, found = vaihingen(root)
    assert [t.stem for t in train] == ["top_mosaic_09cm_area1", "top_mosaic_09cm_area3"]
    assert [(t.height, t.width) for t in train] == [(48, 64), (56, 56)]  # sizes vary
    assert all(t.image.parent.name == "top" for t in train)
    assert all(t.label.parent.name != "gts_for_participants" for t in train)
    assert found.modality == "irrg" and train[0].bands == 3
    assert train.crs is None  # pixel space
    test, _ = vaihingen(root, "test")
    assert [t.stem for t in test] == ["top_mosaic_09cm_area2"]


def test_vaihingen_split_and_missing_ground_truth(tmp_path):
    ds = get_dataset("vaihingen")
    assert (len(ds.train), len(ds.test)) == (16, 17) and ds.bad_tiles == {}
    root = write_vaihingen(tmp_path)
    with pytest.raises(ConfigError, match="has no modality 'rgb'; choose one of: irrg"):
        vaihingen(root, modality="rgb")
    with pytest.raises(DataError, match="no ISPRS Vaihingen eroded labels: looked for "
                       "ISPRS_semantic_labeling_Vaihingen_ground_truth_eroded_COMPLETE.zip"):
        vaihingen(root, eroded=True)
    (root / "ISPRS_semantic_labeling_Vaihingen_ground_truth_COMPLETE.zip").unlink()
    with pytest.raises(DataError, match="no ISPRS Vaihingen labels"):
        vaihingen(root)  # the image archive's gts_for_participants are never used
    with pytest.raises(DataError, match=r"no top/top_mosaic_09cm_area5.tif \(ISPRS Vaihingen "
                       r"tile 5, official train split\)"):
        official_pairs("vaihingen", root, labels=False)


def test_vaihingen_unpacked_into_the_root_itself(tmp_path):
    """torchgeo's layout: both archives unpacked into one folder, labels loose in it."""
    import shutil

    src = write_vaihingen(tmp_path / "src", zipped=False)
    root = tmp_path / "flat"
    shutil.copytree(src / "ISPRS_semantic_labeling_Vaihingen", root)
    for f in (src / "ISPRS_semantic_labeling_Vaihingen_ground_truth_COMPLETE").iterdir():
        shutil.copy(f, root / f.name)
    train, found = vaihingen(root)
    assert found.images_from == root and found.labels_from == root
    assert [t.label.parent for t in train] == [root, root]
    assert [t.image.parent for t in train] == [root / "top", root / "top"]
