"""The input contract, on real GeoTIFFs written with rasterio."""

import numpy as np
import pytest
import rasterio
from rasterio.crs import CRS

from core.contract import BANDS, ContractError, NotGeoTIFF, band_order, read_scene
from tests.conftest import random_scene


def test_reads_contract_scene_in_band_order(contract_scene):
    data = random_scene()
    scene = read_scene(contract_scene(data=data))
    assert scene.data.dtype == np.uint16 and scene.data.shape == data.shape
    np.testing.assert_array_equal(scene.data, data)
    assert scene.crs.to_epsg() == 32613 and scene.transform.a == 20.0
    assert scene.valid.all()


def test_band_descriptions_reorder_bands(write_geotiff):
    data = random_scene()
    shuffled = [5, 0, 3, 1, 4, 2]
    names = [BANDS[i] for i in shuffled]
    scene = read_scene(write_geotiff(data=data[shuffled], descriptions=[n.replace("B", "B0") if len(n) == 2 else n for n in names]))
    np.testing.assert_array_equal(scene.data, data)


def test_without_descriptions_file_order_is_taken(write_geotiff):
    data = random_scene()
    np.testing.assert_array_equal(read_scene(write_geotiff(data=data)).data, data)


def test_nodata_pixels_are_marked_invalid(contract_scene):
    data = random_scene()
    data[:, :10, :] = 0
    scene = read_scene(contract_scene(data=data))
    assert not scene.valid[:10].any() and scene.valid[10:].all()


@pytest.mark.parametrize("count", [3, 7])
def test_wrong_band_count(write_geotiff, count):
    with pytest.raises(ContractError, match=f"expected 6 bands .* has {count}"):
        read_scene(write_geotiff(data=random_scene((count, 80, 80))))


def test_missing_band_is_named(write_geotiff):
    with pytest.raises(ContractError, match="lack B12"):
        read_scene(write_geotiff(descriptions=["B2", "B3", "B4", "B8", "B11", "B8A"]))


def test_no_crs(write_geotiff):
    with pytest.raises(ContractError, match="no CRS"):
        read_scene(write_geotiff(crs=None, transform=None))


def test_geographic_crs(write_geotiff):
    from rasterio.transform import from_origin

    with pytest.raises(ContractError, match="not projected"):
        read_scene(write_geotiff(crs=CRS.from_epsg(4326), transform=from_origin(5, 30, 0.0002, 0.0002)))


def test_too_small(write_geotiff):
    with pytest.raises(ContractError, match="at least 64x64"):
        read_scene(write_geotiff(data=random_scene((6, 10, 10))))


def test_float_data(write_geotiff):
    with pytest.raises(ContractError, match="float32; expected uint16"):
        read_scene(write_geotiff(data=random_scene().astype(np.float32)))


def test_not_a_geotiff(tmp_path):
    path = tmp_path / "x.tif"
    path.write_text("<html>hello</html>")
    with pytest.raises(NotGeoTIFF, match="not a GeoTIFF"):
        read_scene(path)
    empty = tmp_path / "empty.tif"
    empty.write_bytes(b"")
    with pytest.raises(NotGeoTIFF, match="empty"):
        read_scene(empty)


def test_png_is_not_a_geotiff(tmp_path):
    from PIL import Image

    path = tmp_path / "x.png"
    Image.fromarray(np.zeros((80, 80, 3), np.uint8)).save(path)
    with pytest.raises(NotGeoTIFF):
        read_scene(path)


def test_band_order_names():
    assert band_order(("B02", "B03", "B04", "B08", "B11", "B12")) == [0, 1, 2, 3, 4, 5]
    assert band_order((None,) * 6) == [0, 1, 2, 3, 4, 5]
    assert band_order(("B12", "B11", "B8", "B4", "B3", "B2")) == [5, 4, 3, 2, 1, 0]


def test_huge_header_is_refused_before_reading(tmp_path):
    """A small file whose header claims 100 000 x 100 000 pixels."""
    from rasterio.transform import from_origin

    path = tmp_path / "huge.tif"
    with rasterio.open(path, "w", driver="GTiff", width=100_000, height=100_000, count=6, dtype="uint16",
                       crs="EPSG:32613", transform=from_origin(0, 0, 20, 20), tiled=True, sparse_ok=True) as dst:
        pass
    assert path.stat().st_size < 10_000_000
    with pytest.raises(ContractError, match="at most 20000 pixels"):
        read_scene(path)


def test_truncated_tiff_is_a_contract_error(contract_scene, tmp_path):
    from core.contract import open_scene

    good = contract_scene(data=random_scene((6, 300, 300)))
    raw = good.read_bytes()
    cut = tmp_path / "cut.tif"
    cut.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ContractError):
        read_scene(cut)
    with pytest.raises(ContractError):
        scene = open_scene(cut)
        scene.read()  # the header may survive; the pixels do not


def test_windowed_scene_keeps_one_handle_per_thread_and_closes_them(contract_scene):
    """open_scene reads window by window through one open dataset per reading thread (GDAL's block
    cache then serves the blocks overlapping windows share); close() closes them, reading reopens."""
    import gc
    import os
    import threading

    from core.contract import open_scene

    path = contract_scene()
    whole = read_scene(path).data

    def open_fds() -> int:
        return sum(1 for fd in os.listdir("/proc/self/fd") if os.path.realpath(f"/proc/self/fd/{fd}") == str(path))

    scene = open_scene(path)
    np.testing.assert_array_equal(scene.read((3, 5, 40, 50)), whole[:, 3:43, 5:55])
    np.testing.assert_array_equal(scene.read((10, 7, 20, 30), bands=("B11", "B12")), whole[4:, 10:30, 7:37])
    seen = []
    worker = threading.Thread(target=lambda: seen.append(scene.read((0, 0, 8, 8))))
    worker.start()
    worker.join()
    np.testing.assert_array_equal(seen[0], whole[:, :8, :8])
    assert len(scene._handles) == 2 and open_fds() >= 1
    scene.close()
    assert scene._handles == {} and open_fds() == 0
    np.testing.assert_array_equal(scene.read((0, 0, 4, 4)), whole[:, :4, :4])  # reopens
    del scene
    gc.collect()
    assert open_fds() == 0  # garbage collection closes what close() was not called for
