"""Bounded property-based fuzzing: the GeoTIFF reader and the upload endpoint never crash or hang.

Inputs: random bytes, and real contract GeoTIFFs with bytes flipped, cut or spliced (TIFF header
followed by HTML, the polyglot case). The reader may accept a file or refuse it with a
ContractError; the endpoint answers 2xx, 4xx or 503, never 500.
"""

import io

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.contract import ContractError, read_scene
from tests.conftest import random_scene, utm

pytestmark = pytest.mark.slow


def valid_tiff_bytes() -> bytes:
    from core.contract import scene_bytes

    crs, transform = utm()
    return scene_bytes(random_scene((6, 64, 64)), crs, transform)


VALID = valid_tiff_bytes()


@st.composite
def damaged_tiffs(draw):
    kind = draw(st.sampled_from(["random", "flip", "cut", "polyglot"]))
    if kind == "random":
        return draw(st.binary(min_size=0, max_size=4096))
    data = bytearray(VALID)
    if kind == "flip":
        for _ in range(draw(st.integers(1, 20))):
            i = draw(st.integers(0, len(data) - 1))
            data[i] = draw(st.integers(0, 255))
        return bytes(data)
    if kind == "cut":
        return bytes(data[: draw(st.integers(0, len(data) - 1))])
    return bytes(data[:8]) + b"<html><body><script>alert(1)</script></body></html>" + bytes(data[8:64])


FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FUZZ
@given(blob=damaged_tiffs())
def test_reader_accepts_or_refuses_cleanly(tmp_path, blob):
    path = tmp_path / "fuzz.tif"
    path.write_bytes(blob)
    try:
        scene = read_scene(path)
    except ContractError as exc:
        assert str(exc) and "\n" not in str(exc)
    else:
        assert scene.data.shape[0] == 6


@pytest.fixture(scope="module")
def fuzz_client(triton, tmp_path_factory):
    from webapp.app import create_app

    app = create_app({"TRITON_URL": triton.http_url, "TESTING": True,
                      "DATA_DIR": str(tmp_path_factory.mktemp("fuzz-var"))})
    return app.test_client()


@FUZZ
@given(blob=damaged_tiffs(), name=st.text(min_size=0, max_size=40))
def test_upload_never_answers_500(fuzz_client, blob, name):
    r = fuzz_client.post("/api/v1/segment", data={"file": (io.BytesIO(blob), name or "x.tif")},
                         content_type="multipart/form-data")
    assert r.status_code < 500 or r.status_code == 503, (r.status_code, r.data[:300])
    assert "Traceback" not in r.get_data(as_text=True)
