"""The results database: Alembic migrations, PostGIS columns, and results committed only with their files.

Against a real SQLite file and a real PostgreSQL 15 with PostGIS (tests/support/postgres.py; the
fixtures are in tests/conftest.py).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from webapp import db
from webapp.models import PlumeRecord, Result
from webapp.store import ResultStore

# -- migrations ----------------------------------------------------------------

def test_migrations_create_the_schema_and_are_idempotent(database_url):
    engine = db.make_engine(database_url)
    assert db.current_revision(engine) is None
    db.migrate(engine)
    db.migrate(engine)  # a second start changes nothing
    assert db.current_revision(engine) == db.head_revision()
    tables = set(sa.inspect(engine).get_table_names())
    assert {"results", "plumes", "result_files", "alembic_version"} <= tables
    uniques = {u["name"] for u in sa.inspect(engine).get_unique_constraints("results")}
    assert "uq_results_content_model" in uniques


def test_migrations_go_down_and_up_again(database_url):
    from alembic import command

    engine = db.make_engine(database_url)
    db.migrate(engine)
    with engine.begin() as conn:
        command.downgrade(db.alembic_config(connection=conn), "base")
    assert "results" not in sa.inspect(engine).get_table_names()
    db.migrate(engine)
    assert "results" in sa.inspect(engine).get_table_names()


def test_postgis_geometry_columns(postgres_url):
    engine = db.make_engine(postgres_url)
    db.migrate(engine)
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT f_table_name, f_geometry_column, type, srid FROM geometry_columns ORDER BY 1, 2")).all()
        indexes = {r[0] for r in conn.execute(sa.text(
            "SELECT indexname FROM pg_indexes WHERE indexdef ILIKE '%USING gist%'"))}
    assert ("plumes", "geometry", "GEOMETRY", 4326) in rows
    assert ("plumes", "source", "POINT", 4326) in rows
    assert ("results", "footprint", "POLYGON", 4326) in rows
    assert {"ix_plumes_geometry", "ix_plumes_source", "ix_results_footprint"} <= indexes


# -- the store -------------------------------------------------------------------

SQUARE = {"type": "Polygon", "coordinates": [[[-105.0, 31.6], [-104.99, 31.6], [-104.99, 31.61],
                                              [-105.0, 31.61], [-105.0, 31.6]]]}
FOOTPRINT = {"type": "Polygon", "coordinates": [[[-105.1, 31.5], [-104.9, 31.5], [-104.9, 31.7],
                                                 [-105.1, 31.7], [-105.1, 31.5]]]}


def make_result(sha="a" * 64, version="1") -> Result:
    rid = uuid.uuid4().hex
    return Result(id=rid, input_name="scene.tif", input_bytes=123, content_sha256=sha, width=64, height=64,
                  crs="EPSG:32613", bounds=[600000.0, 3498720.0, 601280.0, 3500000.0], footprint=FOOTPRINT,
                  model_name="methane_seg", model_version=version, threshold=0.5, plume_pixels=25,
                  plume_count=1, max_probability=0.9, timings={"total_s": 1.0}, directory=rid)


def make_plume(number=1) -> PlumeRecord:
    return PlumeRecord(number=number, pixels=25, area_m2=10000.0, length_m=100.0, mean_probability=0.7,
                       max_probability=0.9, source_lon=-104.995, source_lat=31.605, source_row=3.0, source_col=4.0,
                       geometry=SQUARE, source={"type": "Point", "coordinates": [-104.995, 31.605]})


def stage(store: ResultStore, result: Result) -> tuple[Path, dict]:
    staged = store.staging_dir(result.id)
    files = {"geojson": staged / "plumes.geojson", "mask": staged / "mask.tif"}
    files["geojson"].write_text('{"type":"FeatureCollection","features":[]}')
    files["mask"].write_bytes(b"II*\x00" + b"\x00" * 100)
    return staged, files


@pytest.fixture
def store(database_url, tmp_path):
    engine = db.make_engine(database_url)
    db.migrate(engine)
    return ResultStore(engine, tmp_path / "data")


def test_commit_stores_rows_and_files_together(store):
    result = make_result()
    staged, files = stage(store, result)
    stored = store.commit(result, [make_plume()], staged, files)
    assert not staged.exists()
    assert stored.id == result.id and [p.number for p in stored.plumes] == [1]
    assert stored.plumes[0].geometry == SQUARE  # GeoJSON in, GeoJSON out (through PostGIS on PostgreSQL)
    assert stored.footprint["type"] == "Polygon"
    for kind in ("geojson", "mask"):
        path = store.path(stored, kind)
        assert path.is_file() and path.parent == store.root / result.id
        assert stored.file(kind).bytes == path.stat().st_size
    assert store.find("a" * 64, "methane_seg", "1").id == result.id
    assert store.find("a" * 64, "methane_seg", "2") is None


def test_spatial_query_on_postgis(postgres_url, tmp_path):
    engine = db.make_engine(postgres_url)
    db.migrate(engine)
    store = ResultStore(engine, tmp_path / "data")
    result = make_result()
    store.commit(result, [make_plume()], *stage(store, result))
    with engine.connect() as conn:
        row = conn.execute(sa.text(
            "SELECT ST_Contains(r.footprint, p.source), ST_Intersects(p.geometry, "
            "ST_SetSRID(ST_MakePoint(-104.995, 31.605), 4326)), ST_Area(p.geometry::geography) "
            "FROM plumes p JOIN results r ON r.id = p.result_id")).one()
    assert row[0] is True and row[1] is True
    assert 0.9e6 < row[2] < 1.2e6  # about 950 m x 1110 m


def test_a_failed_commit_leaves_neither_row_nor_files(store):
    result = make_result()
    staged, files = stage(store, result)
    with pytest.raises(sa.exc.IntegrityError):
        store.commit(result, [make_plume(1), make_plume(1)], staged, files)  # duplicate plume number
    assert store.get(result.id) is None
    assert not (store.root / result.id).exists() and not staged.exists()
    assert store.page(1, 10) == ([], 0)


def test_identical_result_committed_twice_keeps_the_first(store):
    first = make_result()
    store.commit(first, [make_plume()], *stage(store, first))
    second = make_result()  # same content hash, model and version
    staged, files = stage(store, second)
    kept = store.commit(second, [make_plume()], staged, files)
    assert kept.id == first.id
    assert not (store.root / second.id).exists() and not staged.exists()
    assert store.page(1, 10)[1] == 1


def test_sweep_removes_what_a_crash_left(store):
    kept = make_result()
    store.commit(kept, [], *stage(store, kept))
    crashed_staging = make_result(sha="b" * 64)
    stage(store, crashed_staging)  # crashed while writing files
    crashed_after_move = make_result(sha="c" * 64)
    staged, _ = stage(store, crashed_after_move)
    staged.rename(store.root / crashed_after_move.id)  # crashed between the move and the commit
    assert store.sweep(min_age_s=3600) == []  # young folders may be another process's work
    removed = store.sweep(min_age_s=0)
    assert sorted(removed) == sorted([".staging-" + crashed_staging.id, crashed_after_move.id])
    assert (store.root / kept.id).is_dir()
    assert [p.name for p in store.root.iterdir()] == [kept.id]


def test_paging_newest_first(store):
    ids = []
    for i in range(5):
        r = make_result(sha=f"{i:064x}")
        store.commit(r, [], *stage(store, r))
        ids.append(r.id)
        time.sleep(0.01)
    rows, total = store.page(1, 2)
    assert total == 5 and [r.id for r in rows] == ids[::-1][:2]
    rows, _ = store.page(3, 2)
    assert [r.id for r in rows] == [ids[0]]


def test_unknown_ids_are_not_looked_up(store):
    assert store.get("../../etc/passwd") is None
    assert store.get(uuid.uuid4().hex) is None
