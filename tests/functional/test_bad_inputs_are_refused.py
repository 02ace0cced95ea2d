"""Every bad input of tests/support/bad_inputs.py, through the CLI (exit code 2, one line) and through the
web API of a real web app process (a clear JSON 4xx, the process keeps serving, nothing stored)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa

from methane_seg.cli import EXIT_BAD_INPUT, main
from core.contract import MAX_FILE_MB
from tests.support.bad_inputs import BAD_INPUTS, LIMIT_MB, ODD_NAME, POLYGLOT_HTML, TRAVERSAL_NAME, BadInput
from tests.support.live import WebApp, scene_bytes

pytestmark = pytest.mark.slow


# -- the CLI ------------------------------------------------------------------------------------

@pytest.mark.parametrize("case", BAD_INPUTS, ids=str)
def test_cli_refuses_with_exit_2_and_one_line(case: BadInput, triton, tmp_path, capsys):
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    path = case.build(src)
    arg = str(src / "sub" / ".." / path.name) if case.upload_name else str(path)  # a path with '..' in it
    out = tmp_path / "out"
    capsys.readouterr()  # what writing the file printed is not the CLI's
    code = main(["segment", arg, "--out", str(out), "--url", triton.http_url, "--max-size-mb", str(LIMIT_MB)])
    err = capsys.readouterr().err.strip()
    assert code == EXIT_BAD_INPUT, err
    assert err.startswith("methane-seg: error: bad input:") and len(err.splitlines()) == 1, err
    assert case.message in err
    assert not out.exists()  # nothing written


def test_cli_size_limit_defaults_to_512_mb_and_reads_max_upload_mb(monkeypatch):
    from client.cli import segment_parser
    from webapp.config import settings_from_env

    monkeypatch.delenv("MAX_UPLOAD_MB", raising=False)
    assert segment_parser().parse_args(["x.tif", "--out", "o"]).max_size_mb == MAX_FILE_MB == 512
    assert settings_from_env()["MAX_CONTENT_LENGTH"] == 512 * 2**20
    monkeypatch.setenv("MAX_UPLOAD_MB", "64")
    assert segment_parser().parse_args(["x.tif", "--out", "o"]).max_size_mb == 64
    assert settings_from_env()["MAX_CONTENT_LENGTH"] == 64 * 2**20


def test_cli_takes_odd_file_names_and_writes_only_into_out(triton, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    scene = src / ODD_NAME
    scene.write_bytes(scene_bytes(128, n=1))
    out = tmp_path / "out"
    assert main(["segment", str(scene), "--out", str(out), "--url", triton.http_url]) == 0
    stem = Path(ODD_NAME).stem
    written = sorted(p.name for p in out.iterdir())
    assert written and all(name.startswith(stem + "_") for name in written), written
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "out"]  # nothing beside


# -- the web API (a real web app process) -------------------------------------------------------

@pytest.fixture(scope="module")
def webapp(triton, tmp_path_factory):
    app = WebApp(tmp_path_factory.mktemp("bad-inputs") / "var", triton.http_url, MAX_UPLOAD_MB=LIMIT_MB,
                 TRITON_TIMEOUT=30)
    app.start()
    yield app
    app.stop()


def stored_results(app: WebApp) -> int:
    engine = sa.create_engine(f"sqlite:///{app.data_dir / 'methane-seg.db'}", poolclass=sa.pool.NullPool)
    with engine.connect() as conn:
        return conn.execute(sa.text("SELECT count(*) FROM results")).scalar_one()


def leftovers(app: WebApp) -> list[str]:
    return sorted(os.listdir(app.data_dir / "uploads")) + sorted(os.listdir(app.data_dir / "results"))


@pytest.mark.parametrize("case", BAD_INPUTS, ids=str)
def test_api_refuses_with_a_clear_4xx_and_keeps_serving(case: BadInput, webapp, tmp_path):
    path = case.build(tmp_path)
    before = stored_results(webapp)
    r = webapp.post(case.upload_name or path.name, path.read_bytes(), timeout=60)
    assert r.status_code == case.status, (r.status_code, r.text[:500])
    assert r.headers["Content-Type"] == "application/json"
    error = r.json()["error"]
    assert error["status"] == case.status and case.message in error["message"], error
    assert "\n" not in error["message"] and "Traceback" not in r.text
    # Neither our generated paths nor the directories of the user's name reach the message.
    for secret in (str(webapp.data_dir), "upload-", "/tmp", "../", "cron.d"):
        assert secret not in error["message"], error
    assert webapp.alive() and requests.get(webapp.url + "/healthz", timeout=5).status_code == 200
    assert stored_results(webapp) == before == 0
    assert leftovers(webapp) == []  # no upload kept, no result folder begun


def test_api_stores_odd_names_under_generated_names_only(webapp, tmp_path):
    """A valid scene under a traversal name and under an odd name: accepted, the name kept only as a label."""
    for n, name in enumerate((TRAVERSAL_NAME, ODD_NAME, "..", "/", "nul\x00byte.tif")):
        r = webapp.post(name, scene_bytes(128, n=100 + n), timeout=120)
        assert r.status_code == 201, (name, r.text[:500])
        body = r.json()
        assert "/" not in body["input"]["name"] and "\\" not in body["input"]["name"]
        folder = webapp.data_dir / "results" / body["id"]
        assert sorted(p.name for p in folder.iterdir()) == sorted(
            ["mask.tif", "prob.tif", "plumes.geojson", "overlay.png", "preview_rgb.png", "preview_swir.png"])
        g = requests.get(body["files"]["geojson"]["url"], timeout=10)
        assert g.status_code == 200 and "\n" not in g.headers["Content-Disposition"]
    assert body["input"]["name"] and stored_results(webapp) == 5
    assert set(os.listdir(webapp.data_dir)) <= {"methane-seg.db", "methane-seg.db-shm", "methane-seg.db-wal",
                                                "results", "uploads"}
    assert not (webapp.data_dir.parent / "etc").exists()
    # Files are served by result id and kind only; anything path-like is a 404.
    for url in ("/api/v1/results/..%2F..%2Fetc%2Fpasswd", f"/api/v1/results/{body['id']}/files/..%2Fmethane-seg.db",
                f"/api/v1/results/{body['id']}/files/mask.tif", "/api/v1/results/../../../etc/passwd"):
        assert requests.get(webapp.url + url, timeout=10).status_code == 404, url


def test_api_polyglot_with_html_after_a_valid_tiff_is_never_served_back(webapp, tmp_path):
    """A whole valid GeoTIFF with HTML appended is a valid scene: accepted, and only our own outputs
    are ever served; the upload itself is deleted once answered."""
    r = webapp.post("polyglot_tail.html", scene_bytes(128, n=200) + POLYGLOT_HTML, timeout=120)
    assert r.status_code == 201, r.text[:500]
    for f in r.json()["files"].values():
        got = requests.get(f["url"], timeout=10)
        assert got.status_code == 200 and POLYGLOT_HTML not in got.content
        assert got.headers["Content-Type"].split(";")[0] in ("image/tiff", "image/png", "application/geo+json")
    assert os.listdir(webapp.data_dir / "uploads") == []
