"""The JSON API, /healthz, /readyz and /metrics against the real tritonserver and a real database
(a SQLite file, and PostgreSQL 15 with PostGIS; see tests/functional/test_results_database.py for the server)."""

from __future__ import annotations

import io
import json
import re
import time
import urllib.request

import numpy as np
import pytest
import rasterio

from tests.conftest import EXAMPLES, random_scene
from webapp.app import create_app

pytestmark = pytest.mark.slow


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    if request.param == "sqlite":
        return None  # the default: a SQLite file under DATA_DIR
    return request.getfixturevalue("postgres_url")


def make_app(triton, tmp_path, database_url=None, **config):
    return create_app({"TRITON_URL": triton.http_url, "TRITON_PROTOCOL": "http", "TESTING": True,
                       "DATA_DIR": str(tmp_path / "var"), "DATABASE_URL": database_url, **config})


@pytest.fixture
def app(triton, tmp_path, database_url):
    return make_app(triton, tmp_path, database_url)


@pytest.fixture
def client(app):
    return app.test_client()


def post(client, path, name=None, url="/api/v1/segment"):
    data = path.read_bytes() if hasattr(path, "read_bytes") else path
    return client.post(url, data={"file": (io.BytesIO(data), name or getattr(path, "name", "x.tif"))},
                       content_type="multipart/form-data")


def test_segment_returns_the_stored_result(app, client, scenes):
    r = post(client, scenes["strong"])
    assert r.status_code == 201, r.json
    body = r.json
    assert re.fullmatch(r"[0-9a-f]{32}", body["id"]) and body["cached"] is False
    assert r.headers["Location"].endswith(f"/api/v1/results/{body['id']}")
    assert body["input"]["name"] == "strong.tif" and body["input"]["width"] == 384
    assert body["input"]["crs"].startswith("EPSG:326")
    left, bottom, right, top = body["input"]["bounds"]
    assert right > left and top > bottom
    # a 12-band document: the multi-pass model, against the document's own reference bands
    assert body["model"]["name"] == "methane_seg_multipass" and body["model"]["version"]
    assert body["model"]["mode"] == "multi-pass" and body["model"]["reference"] == "strong.tif bands B2_ref..B12_ref"
    assert body["plume_pixels"] > 50 and body["plume_count"] >= 1 == len(body["plumes"][:1])
    plume = body["plumes"][0]
    assert -180 <= plume["source"]["lon"] <= 180 and -90 <= plume["source"]["lat"] <= 90
    assert plume["area_m2"] > 0 and 0 < plume["confidence"]["mean"] <= plume["confidence"]["max"] <= 1
    assert plume["geometry"]["type"] in ("Polygon", "MultiPolygon")
    assert {"inference_s", "total_s", "tiles"} <= set(body["timings"])
    assert {"mask", "prob", "geojson", "png", "preview_rgb", "preview_swir"} <= set(body["files"])

    again = client.get(f"/api/v1/results/{body['id']}")
    assert again.status_code == 200
    stored = again.json
    assert stored["plumes"] == body["plumes"] and stored["files"] == body["files"]

    # The files: GeoJSON of the plumes and a mask on the input's grid.
    g = client.get(body["files"]["geojson"]["url"])
    assert g.status_code == 200 and g.mimetype == "application/geo+json"
    assert "attachment" in g.headers["Content-Disposition"] and "strong_plumes.geojson" in g.headers[
        "Content-Disposition"]
    fc = json.loads(g.data)
    assert fc["type"] == "FeatureCollection"
    assert sum(f["properties"]["kind"] == "plume" for f in fc["features"]) == body["plume_count"]
    m = client.get(body["files"]["mask"]["url"])
    with rasterio.MemoryFile(m.data) as mem, mem.open() as ds, rasterio.open(scenes["strong"]) as src:
        assert ds.crs == src.crs and ds.transform == src.transform and ds.shape == src.shape
        assert int((ds.read(1) == 1).sum()) == body["plume_pixels"]
    png = client.get(body["files"]["png"]["url"])
    assert png.mimetype == "image/png" and png.data[:8] == b"\x89PNG\r\n\x1a\n"


def test_identical_upload_is_answered_from_the_store(client, scenes):
    first = post(client, scenes["strong"])
    assert first.status_code == 201
    second = post(client, scenes["strong"], name="renamed.tif")
    assert second.status_code == 200 and second.json["cached"] is True
    assert second.json["id"] == first.json["id"]
    assert client.get("/api/v1/results").json["total"] == 1
    metrics = client.get("/metrics").data.decode()
    assert 'methane_seg_results_total{outcome="cached"} 1.0' in metrics
    assert 'methane_seg_results_total{outcome="computed"} 1.0' in metrics


def test_results_are_paged_newest_first(client, scenes, contract_scene):
    ids = [post(client, p).json["id"] for p in (scenes["free"], contract_scene(), scenes["strong"])]
    page1 = client.get("/api/v1/results?per_page=2").json
    assert page1["total"] == 3 and page1["pages"] == 2 and page1["page"] == 1
    assert [r["id"] for r in page1["results"]] == ids[::-1][:2]
    assert "plumes" not in page1["results"][0]  # summaries; the full result is one GET away
    page2 = client.get(page1["links"]["next"]).json
    assert [r["id"] for r in page2["results"]] == [ids[0]] and "next" not in page2["links"]
    assert client.get("/api/v1/results?page=0").status_code == 400
    assert client.get("/api/v1/results?per_page=abc").status_code == 400
    assert client.get("/api/v1/results?page=9").json["results"] == []
    # a page past the database's integers is a 400, not a 500 from the row offset
    assert client.get("/api/v1/results?page=9223372036854775807").status_code == 400
    assert client.get("/history?page=99999999999999999999").status_code == 400


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize(
    "case,status,message",
    [("text", 415, "not a GeoTIFF"), ("empty", 415, "is empty"), ("three_bands", 422, "expected 6 bands"),
     ("no_crs", 422, "no CRS"), ("tiny", 422, "at least 64x64")],
)
def test_bad_uploads_are_clear_json_errors(client, write_geotiff, tmp_path, case, status, message):
    if case == "text":
        path = tmp_path / "a.tif"
        path.write_text("hello")
    elif case == "empty":
        path = tmp_path / "e.tif"
        path.write_bytes(b"")
    elif case == "three_bands":
        path = write_geotiff("rgb.tif", data=random_scene((3, 80, 80)))
    elif case == "no_crs":
        path = write_geotiff("nocrs.tif", crs=None, transform=None)
    else:
        path = write_geotiff("tiny.tif", data=random_scene((6, 10, 10)))
    r = post(client, path, name="../../my scene.tif")
    assert r.status_code == status and r.is_json
    assert message in r.json["error"]["message"] and r.json["error"]["status"] == status
    assert "/tmp" not in r.json["error"]["message"] and "upload-" not in r.json["error"]["message"]
    assert client.get("/api/v1/results").json["total"] == 0
    assert list((tmp_path / "var" / "uploads").iterdir()) == []  # nothing left behind


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_missing_or_extra_files_and_unknown_ids(client, contract_scene):
    r = client.post("/api/v1/segment", data={}, content_type="multipart/form-data")
    assert r.status_code == 400 and "form field 'file'" in r.json["error"]["message"]
    data = contract_scene().read_bytes()
    r = client.post("/api/v1/segment", data={"file": [(io.BytesIO(data), "a.tif"), (io.BytesIO(data), "b.tif")]},
                    content_type="multipart/form-data")
    assert r.status_code == 400 and "one GeoTIFF per request" in r.json["error"]["message"]
    assert client.get("/api/v1/results/" + "0" * 32).status_code == 404
    assert client.get("/api/v1/results/nope").json["error"]["status"] == 404
    assert client.get("/api/v1/jobs/" + "0" * 32).status_code == 404
    assert client.get("/api/v1/nothing").status_code == 404 and client.get("/api/v1/nothing").is_json
    assert client.get("/api/v1/segment").status_code == 405


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_upload_over_the_limit_is_413_json(triton, tmp_path, contract_scene, database_url):
    client = make_app(triton, tmp_path, MAX_CONTENT_LENGTH=1000).test_client()
    r = post(client, contract_scene())
    assert r.status_code == 413 and "limit" in r.json["error"]["message"]


def test_large_scene_runs_as_a_job_with_progress(triton, tmp_path, scenes, database_url):
    app = make_app(triton, tmp_path, database_url, SYNC_MAX_PIXELS=256 * 256)
    client = app.test_client()
    r = post(client, scenes["strong"])  # 384 x 384 > 256 x 256
    assert r.status_code == 202, r.json
    job = r.json
    assert job["status"] in ("queued", "running") and job["tiles_total"] >= 4
    assert client.get("/metrics").data.decode().count("methane_seg_jobs_in_flight 1.0") == 1
    # The same upload while it runs joins the running job.
    assert post(client, scenes["strong"]).json["id"] == job["id"]
    seen, deadline = [], time.time() + 60
    while time.time() < deadline:
        job = client.get(r.headers["Location"]).json
        seen.append(job["progress"])
        if job["status"] in ("done", "failed"):
            break
        time.sleep(0.1)
    assert job["status"] == "done", job
    assert seen == sorted(seen) and seen[-1] == 1.0
    result = client.get(job["links"]["result"]).json
    assert result["input"]["width"] == 384 and result["plume_pixels"] > 50
    assert list((tmp_path / "var" / "uploads").iterdir()) == []
    metrics = client.get("/metrics").data.decode()
    assert "methane_seg_jobs_in_flight 0.0" in metrics and 'methane_seg_jobs_total{status="done"} 1.0' in metrics
    # The page follows the job to its result.
    page = client.get(f"/jobs/{job['id']}")
    assert page.status_code == 303 and page.headers["Location"].endswith(f"/results/{result['id']}")


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_scene_of_2048_pixels_is_answered_at_once_and_stored(client, tmp_path):
    """2048 x 2048, the largest scene answered in the request itself (larger ones become jobs): 201
    with the whole scene's result, stored and served back. Its 10-second budget is a benchmark
    (perf/bench_upload.py --size 2048), not a timed test."""
    from core.contract import read_scene, write_scene

    sample = read_scene(EXAMPLES / "sample_scene.tif")
    big = np.tile(sample.data, (1, 2048 // sample.height + 1, 2048 // sample.width + 1))[:, :2048, :2048]
    path = tmp_path / "big2048.tif"
    write_scene(path, np.ascontiguousarray(big), sample.crs, sample.transform)
    r = post(client, path)
    assert r.status_code == 201, r.json
    assert (r.json["input"]["width"], r.json["input"]["height"]) == (2048, 2048)
    stored = client.get(f"/api/v1/results/{r.json['id']}")
    assert stored.status_code == 200 and stored.json["id"] == r.json["id"]
    assert stored.json["plume_count"] == r.json["plume_count"]
    mask = client.get(r.json["files"]["mask"]["url"])
    assert mask.status_code == 200
    with rasterio.open(io.BytesIO(mask.data)) as ds:
        assert (ds.width, ds.height) == (2048, 2048)


def test_health_readiness_and_metrics(client, database_url):
    assert client.get("/healthz").json == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200, ready.json
    assert ready.json["checks"]["triton"]["ok"] and ready.json["checks"]["database"]["ok"]
    assert ready.json["checks"]["database"]["dialect"] == ("sqlite" if database_url is None else "postgresql")
    client.get("/api/v1/results/" + "0" * 32)
    text = client.get("/metrics").data.decode()
    assert re.search(r'methane_seg_http_requests_total\{endpoint="/api/v1/results/<result_id>",method="GET",'
                     r'status="404"\} 1\.0', text)
    assert 'methane_seg_http_request_duration_seconds_count{endpoint="/readyz",method="GET",status="200"} 1.0' in text
    for name in ("methane_seg_inference_duration_seconds", "methane_seg_jobs_in_flight",
                 "methane_seg_plumes_found_total"):
        assert f"# TYPE {name.removesuffix('_total')}" in text


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_metrics_count_inference_and_plumes_but_not_tritons(triton, tmp_path, scenes, database_url):
    client = make_app(triton, tmp_path).test_client()
    body = post(client, scenes["strong"]).json
    text = client.get("/metrics").data.decode()
    assert 'methane_seg_inference_duration_seconds_count{mode="sync"} 1.0' in text
    assert f"methane_seg_plumes_found_total {float(body['plume_count'])}" in text
    assert 'methane_seg_http_requests_total{endpoint="/api/v1/segment",method="POST",status="201"} 1.0' in text
    # Triton's own series stay on its metrics port, which Prometheus scrapes itself: counted once
    assert "nv_inference" not in text
    with urllib.request.urlopen(triton.metrics_url, timeout=5) as r:
        assert "nv_inference_request_success" in r.read().decode()


def test_not_ready_when_triton_or_the_database_is_down(triton, tmp_path):
    import sqlalchemy as sa

    from serving.tritonserver import free_port

    app = create_app({"TRITON_URL": f"127.0.0.1:{free_port()}", "DATA_DIR": str(tmp_path / "var")})
    r = app.test_client().get("/readyz")
    assert r.status_code == 503 and not r.json["checks"]["triton"]["ok"] and r.json["checks"]["database"]["ok"]
    assert app.test_client().get("/healthz").status_code == 200
    # Triton up, the database gone (a PostgreSQL address where nothing listens).
    app = make_app(triton, tmp_path)
    app.extensions["engine"] = sa.create_engine(f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/x",
                                                connect_args={"connect_timeout": 2})
    r = app.test_client().get("/readyz")
    assert r.status_code == 503 and r.json["checks"]["triton"]["ok"] and not r.json["checks"]["database"]["ok"]
    assert "127.0.0.1" in r.json["checks"]["database"]["error"]


def test_openapi_document_is_valid_and_matches_answers(client, scenes):
    from openapi_schema_validator import OAS31Validator
    from openapi_spec_validator import validate

    doc = client.get("/api/v1/openapi.json").json
    validate(doc)
    assert {"/api/v1/segment", "/api/v1/results", "/api/v1/results/{result_id}", "/healthz", "/readyz",
            "/metrics"} <= set(doc["paths"])
    body = post(client, scenes["strong"]).json
    listing = client.get("/api/v1/results").json

    def check(instance, name):
        schema = {"$ref": f"#/components/schemas/{name}", "components": doc["components"]}
        OAS31Validator(schema).validate(instance)

    check(body, "Result")
    check(listing, "ResultPage")
    check(client.get("/api/v1/results/" + "0" * 32).json, "Error")


def test_api_key_guards_the_json_api(triton, tmp_path):
    app = make_app(triton, tmp_path, API_KEY="s3cret-key")
    c = app.test_client()
    assert c.get("/api/v1/results").status_code == 401
    assert c.get("/api/v1/results", headers={"X-API-Key": "wrong"}).status_code == 401
    r = c.get("/api/v1/results", headers={"X-API-Key": "s3cret-key"})
    assert r.status_code == 200
    assert c.get("/api/v1/results", headers={"Authorization": "Bearer s3cret-key"}).status_code == 200
    assert c.get("/api/v1/openapi.json").status_code == 200  # the description stays public
    denied = c.get("/api/v1/results")
    assert denied.get_json()["error"]["message"].startswith("a valid API key is required")


def test_openapi_declares_the_api_key_when_one_is_set(triton, tmp_path):
    from openapi_spec_validator import validate

    open_doc = make_app(triton, tmp_path / "open").test_client().get("/api/v1/openapi.json").json
    assert "securitySchemes" not in open_doc["components"]
    assert not any("security" in op for item in open_doc["paths"].values() for op in item.values())

    c = make_app(triton, tmp_path / "keyed", API_KEY="s3cret-key").test_client()
    doc = c.get("/api/v1/openapi.json").json
    validate(doc)
    schemes = doc["components"]["securitySchemes"]
    assert schemes["ApiKey"] == {**schemes["ApiKey"], "type": "apiKey", "in": "header", "name": "X-API-Key"}
    assert schemes["Bearer"]["type"] == "http" and schemes["Bearer"]["scheme"] == "bearer"
    concrete = {"{result_id}": "0" * 32, "{job_id}": "0" * 32, "{kind}": "mask"}
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if not path.startswith("/api/v1/"):
                assert "security" not in op, path
                continue
            # What the document says is what the server does: no key, 401; the key, past the guard.
            assert op["security"] == [{"ApiKey": []}, {"Bearer": []}] and "401" in op["responses"], path
            url = path
            for k, v in concrete.items():
                url = url.replace(k, v)
            assert c.open(url, method=method.upper()).status_code == 401, path
            assert c.open(url, method=method.upper(), headers={"X-API-Key": "s3cret-key"}).status_code != 401


def post_pair(client, scene, reference, url="/api/v1/segment"):
    return client.post(url, data={"file": (io.BytesIO(scene.read_bytes()), scene.name),
                                  "reference": (io.BytesIO(reference.read_bytes()), reference.name)},
                       content_type="multipart/form-data")


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_scene_with_its_reference_pass_is_one_document(client, scenes, tmp_path):
    """The optional `reference` field: the pair is answered on the scene's grid and stored as its own
    document (the scene alone is another one); a reference that misses the scene is a 422 naming it,
    and nothing is stored."""
    from core.contract import read_scene, write_scene
    from rasterio.transform import from_origin

    scene = read_scene(scenes["strong"])  # the simulator's 12-band document: split into two files
    target, ref = tmp_path / "strong.tif", tmp_path / "earlier.tif"
    write_scene(target, scene.data, scene.crs, scene.transform)
    write_scene(ref, scene.reference, scene.crs, scene.transform)
    pair = post_pair(client, target, ref)
    assert pair.status_code == 201, pair.json
    assert (pair.json["input"]["width"], pair.json["input"]["height"]) == (scene.width, scene.height)
    alone = post(client, target)
    assert alone.status_code == 201 and alone.json["cached"] is False
    assert alone.json["input"]["sha256"] != pair.json["input"]["sha256"]
    assert post_pair(client, target, ref).json["cached"] is True
    far = tmp_path / "far.tif"
    write_scene(far, scene.reference, scene.crs, from_origin(scene.transform.c + 90_000, scene.transform.f, 20, 20))
    missed = post_pair(client, target, far)
    assert missed.status_code == 422 and "reference: far.tif does not overlap" in missed.json["error"]["message"]
    assert client.get("/api/v1/results").json["total"] == 2
    two = client.post("/api/v1/segment", data={"file": (io.BytesIO(b"x"), "a.tif"),
                                               "reference": [(io.BytesIO(b"x"), "r1.tif"), (io.BytesIO(b"x"), "r2.tif")]},
                      content_type="multipart/form-data")
    assert two.status_code == 400 and "at most one reference" in two.json["error"]["message"]
