"""The reference pass under the input contract: a 12-band document and a target + reference pair give
the model the same input; a reference on another grid is warped onto the target's; a disjoint or
too small reference is a clear error, at the contract, before any pixel reaches the server."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from rasterio.crs import CRS
from rasterio.transform import from_origin
from rasterio.warp import Resampling, calculate_default_transform, reproject
from scipy import ndimage

from core.contract import (ALL_BANDS, BANDS, REF_BANDS, ContractError, band_order, open_scene, read_scene,
                           write_scene)
from tests.conftest import raw_geotiff, utm


def smooth_pass(seed: int, shape=(6, 160, 192)) -> np.ndarray:
    """A surface smooth enough that bilinear warping keeps it within a fraction of a per cent."""
    rng = np.random.default_rng(seed)
    field = ndimage.gaussian_filter(rng.random(shape), (0, 6, 6))
    field = (field - field.min()) / np.ptp(field)
    return (1500 + 2500 * field).astype(np.uint16)


@pytest.fixture
def passes(tmp_path):
    crs, transform = utm()
    target, reference = smooth_pass(1), smooth_pass(2)
    doc = tmp_path / "doc12.tif"
    write_scene(doc, np.concatenate([target, reference]), crs, transform)
    write_scene(tmp_path / "target.tif", target, crs, transform)
    write_scene(tmp_path / "ref.tif", reference, crs, transform)
    return tmp_path, target, reference


def test_a_12_band_document_and_a_pair_give_the_same_input(passes):
    folder, target, reference = passes
    doc = open_scene(folder / "doc12.tif")
    pair = open_scene(folder / "target.tif", reference=folder / "ref.tif")
    assert doc.has_reference and pair.has_reference and doc.bands == pair.bands == ALL_BANDS
    window = (17, 33, 96, 128)
    a, b = doc.read(window, ALL_BANDS), pair.read(window, ALL_BANDS)
    assert a.shape == (12, 96, 128) and np.array_equal(a, b)
    assert np.array_equal(a[6:], reference[:, 17:113, 33:161])
    assert np.array_equal(doc.read(window, ("B12_ref", "B12")), np.stack([reference[5], target[5]])[:, 17:113, 33:161])
    whole = read_scene(folder / "target.tif", reference=folder / "ref.tif")
    assert np.array_equal(whole.data, target) and np.array_equal(whole.reference, reference)
    assert np.array_equal(read_scene(folder / "doc12.tif").reference, reference)


def test_twelve_bands_are_reordered_by_their_descriptions(tmp_path, passes):
    folder, target, reference = passes
    shuffled = list(reversed(ALL_BANDS))
    data = np.concatenate([target, reference])[[ALL_BANDS.index(b) for b in shuffled]]
    path = raw_geotiff(tmp_path / "shuffled.tif", data, descriptions=[b.replace("_ref", " ref") for b in shuffled])
    scene = read_scene(path)
    assert np.array_equal(scene.data, target) and np.array_equal(scene.reference, reference)
    assert band_order(tuple(ALL_BANDS)) == list(range(12))
    with pytest.raises(ContractError, match="lack B12_ref"):
        band_order(tuple(ALL_BANDS[:-1]) + ("B12",))


def test_a_reference_on_another_crs_is_warped_onto_the_target_grid(passes):
    folder, target, reference = passes
    crs, transform = utm()
    other = CRS.from_epsg(32614)  # the next UTM zone: another CRS and another grid
    h, w = reference.shape[1:]
    left, top = transform.c, transform.f
    dst_transform, dw, dh = calculate_default_transform(crs, other, w, h, left, top - 20 * h, left + 20 * w, top)
    warped = np.zeros((6, dh, dw), np.uint16)
    for i in range(6):
        reproject(reference[i], warped[i], src_transform=transform, src_crs=crs, dst_transform=dst_transform,
                  dst_crs=other, resampling=Resampling.bilinear, src_nodata=0, dst_nodata=0)
    write_scene(folder / "ref_other.tif", warped, other, dst_transform)
    scene = read_scene(folder / "target.tif", reference=folder / "ref_other.tif")
    inner = (slice(None), slice(8, -8), slice(8, -8))  # the edges fall outside the warped footprint
    back = scene.reference[inner].astype(float)
    assert back.min() > 0
    assert np.median(np.abs(back / reference[inner] - 1)) < 0.01
    assert scene.ref_coverage > 0.95


def test_a_reference_that_misses_the_target_is_refused(passes):
    folder, target, reference = passes
    crs, transform = utm()
    write_scene(folder / "far.tif", reference, crs, from_origin(transform.c + 50_000, transform.f, 20, 20))
    with pytest.raises(ContractError, match="far.tif does not overlap the target"):
        open_scene(folder / "target.tif", reference=folder / "far.tif")
    shifted = from_origin(transform.c + 20 * 150, transform.f, 20, 20)  # 42 of 192 columns overlap
    write_scene(folder / "part.tif", reference, crs, shifted)
    with pytest.raises(ContractError, match="covers 22 % of the target scene; at least 50 %"):
        open_scene(folder / "target.tif", reference=folder / "part.tif")


def test_a_reference_must_be_a_six_band_contract_file(passes, tmp_path):
    folder, target, reference = passes
    with pytest.raises(ContractError, match="already holds a reference pass"):
        open_scene(folder / "doc12.tif", reference=folder / "ref.tif")
    with pytest.raises(ContractError, match="reference: .*has 12 bands"):
        open_scene(folder / "target.tif", reference=folder / "doc12.tif")
    bad = raw_geotiff(tmp_path / "float.tif", reference.astype(np.float32))
    with pytest.raises(ContractError, match="reference: the bands are float32"):
        open_scene(folder / "target.tif", reference=bad)
    with pytest.raises(ContractError, match="reference: no such file"):
        open_scene(folder / "target.tif", reference=tmp_path / "missing.tif")
    with pytest.raises(ContractError, match="the scene has no reference pass"):
        open_scene(folder / "target.tif").read(bands=REF_BANDS)


def test_nodata_in_the_reference_stays_nodata(passes):
    folder, target, reference = passes
    holed = reference.copy()
    holed[:, 40:60, 50:90] = 0
    crs, transform = utm()
    write_scene(folder / "holed.tif", holed, crs, transform)
    scene = read_scene(folder / "target.tif", reference=folder / "holed.tif")
    assert (scene.reference[:, 40:60, 50:90] == 0).all()
    assert scene.valid.all()  # the target's valid pixels are the target's own
    with rasterio.open(folder / "doc12.tif") as ds:
        assert ds.descriptions == ALL_BANDS and ds.count == 2 * len(BANDS)
