"""The upload page through Flask's test client against the real tritonserver."""

import io
import re

import numpy as np
import pytest

from tests.conftest import random_scene
from webapp.app import create_app

pytestmark = pytest.mark.slow


@pytest.fixture
def client(triton, tmp_path):
    app = create_app({"TRITON_URL": triton.http_url, "TRITON_PROTOCOL": "http", "TESTING": True,
                      "DATA_DIR": str(tmp_path / "var"), "DATABASE_URL": None})
    return app.test_client()


def upload(client, path, name=None):
    with open(path, "rb") as f:
        return client.post("/", data={"file": (io.BytesIO(f.read()), name or path.name)},
                           content_type="multipart/form-data")


def test_page_offers_an_upload_form(client):
    r = client.get("/")
    assert r.status_code == 200
    assert b'type="file"' in r.data and b"B11" in r.data


def test_upload_shows_overlay_and_plume_pixels(client, scenes):
    r = upload(client, scenes["strong"])
    assert r.status_code == 200, r.data[:500]
    html = r.data.decode()
    count = int(re.search(r'id="plume-pixels">(\d+)<', html).group(1))
    assert count > 50
    assert 'id="overlay-rgb"' in html and "data:image/png;base64," in html


def test_plume_free_upload_reports_no_plume(client, scenes):
    r = upload(client, scenes["free"])
    assert r.status_code == 200
    count = int(re.search(r'id="plume-pixels">(\d+)<', r.data.decode()).group(1))
    assert count < 10  # a negative scene by the seed's detection rule (>= 10 plume pixels)


def test_sample_scene_within_budget(client):
    from tests.conftest import EXAMPLES

    sample = EXAMPLES / "sample_scene.tif"
    if not sample.exists():
        pytest.fail("examples/sample_scene.tif is missing")
    r = upload(client, sample)
    assert r.status_code == 200
    elapsed = float(re.search(r"<th>Time</th><td>([0-9.]+) s", r.data.decode()).group(1))
    assert int(re.search(r'id="plume-pixels">(\d+)<', r.data.decode()).group(1)) > 0
    assert elapsed < 10.0


@pytest.mark.parametrize(
    "case,status,message",
    [
        ("text", 415, "not a GeoTIFF"),
        ("empty", 415, "is empty"),
        ("three_bands", 422, "expected 6 bands"),
        ("no_crs", 422, "no CRS"),
        ("tiny", 422, "at least 64x64"),
    ],
)
def test_bad_upload_shows_a_clear_message(client, write_geotiff, tmp_path, case, status, message):
    if case == "text":
        path = tmp_path / "a.tif"
        path.write_text("<html><script>alert(1)</script></html>")
    elif case == "empty":
        path = tmp_path / "e.tif"
        path.write_bytes(b"")
    elif case == "three_bands":
        path = write_geotiff("rgb.tif", data=random_scene((3, 80, 80)))
    elif case == "no_crs":
        path = write_geotiff("nocrs.tif", crs=None, transform=None)
    else:
        path = write_geotiff("tiny.tif", data=random_scene((6, 10, 10)))
    r = upload(client, path, name="../../etc/my scene.tif")
    assert r.status_code == status
    html = r.data.decode()
    assert 'id="error"' in html and message in html
    assert "Traceback" not in html and "/tmp" not in html


def test_no_file_chosen(client):
    r = client.post("/", data={}, content_type="multipart/form-data")
    assert r.status_code == 400 and b"choose one GeoTIFF" in r.data


def test_upload_over_the_limit_is_413(triton, contract_scene, tmp_path):
    app = create_app({"TRITON_URL": triton.http_url, "MAX_CONTENT_LENGTH": 1000, "DATA_DIR": str(tmp_path / "var"),
                      "DATABASE_URL": None})
    r = upload(app.test_client(), contract_scene())
    assert r.status_code == 413 and b"limit" in r.data


def test_server_down_is_503(contract_scene, tmp_path):
    from serving.tritonserver import free_port

    app = create_app({"TRITON_URL": f"127.0.0.1:{free_port()}", "DATA_DIR": str(tmp_path / "var"),
                      "DATABASE_URL": None})
    r = upload(app.test_client(), contract_scene())
    assert r.status_code == 503 and b"unavailable" in r.data
