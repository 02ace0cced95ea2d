"""Shared fixtures: a real tritonserver on free ports, real GeoTIFFs, and real databases (SQLite, PostgreSQL)."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from rasterio.crs import CRS
from rasterio.transform import from_origin

from core.contract import write_scene
from core.model_files import served_onnx  # noqa: F401 (the tests' import of it)
from serving.tritonserver import TritonServer
from tests.support.postgres import postgres_server_url, stop_postgres_server

ROOT = Path(__file__).resolve().parent.parent
MODEL_REPOSITORY = Path(os.environ.get("TEST_MODEL_REPOSITORY", ROOT / "model_repository"))
EXAMPLES = ROOT / "examples"


@pytest.fixture(scope="session")
def triton():
    """The real tritonserver from nvidia-pytriton, serving model_repository/ on free ports."""
    server = TritonServer(MODEL_REPOSITORY)
    try:
        server.start(timeout=180)
    except Exception:
        server.cleanup()
        raise
    yield server
    log = server.log_tail(200)
    server.cleanup()
    if os.environ.get("SHOW_TRITON_LOG"):
        print(log)


@pytest.fixture(scope="session")
def scenes(tmp_path_factory):
    """Simulated scenes written as contract GeoTIFFs with their true masks."""
    from training.simulate import write_sim_scene, simulate_scene

    out = tmp_path_factory.mktemp("scenes")
    paths = {
        "strong": write_sim_scene(out, "strong", simulate_scene(
            seed=2_000_101, size=384, n_sources=1, q_kg_h=10_000.0, wind_ms=3.0, clouds=False,
            surface="bright_soil")),
        # plume-free on both dates: with this seed's reference plume (3800 kg/h on the earlier date only)
        # the multi-pass model flags 140 pixels beside it (docs/quality.md counts such scenes)
        "free": write_sim_scene(out, "free", simulate_scene(
            seed=2_000_202, size=256, n_sources=0, clouds=False, surface="sparse_vegetation",
            reference_plume=False)),
    }
    return paths


def utm():
    return CRS.from_epsg(32613), from_origin(600_000.0, 3_500_000.0, 20.0, 20.0)


def random_scene(shape=(6, 128, 160), seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.random(shape) * 3000 + 300).astype(np.uint16)


def mixed_surface(rng, h, w) -> np.ndarray:
    """(6, h, w) reflectance x 10000 of three surfaces mixed in smooth random proportions, a square
    pad of a fourth (bright caliche-like: high B12/B11) and 0.3 % sensor noise."""
    from scipy import ndimage

    spectra = np.array([[0.08, 0.10, 0.12, 0.25, 0.30, 0.22],  # soil
                        [0.04, 0.07, 0.05, 0.40, 0.22, 0.11],  # vegetation
                        [0.15, 0.18, 0.22, 0.28, 0.36, 0.33]])  # bright sand
    weights = ndimage.gaussian_filter(rng.random((3, h, w)), (0, 3, 3))
    weights /= weights.sum(axis=0)
    refl = np.einsum("kb,khw->bhw", spectra, weights)
    refl[:, 40:47, 17:24] = np.array([0.30, 0.33, 0.36, 0.40, 0.42, 0.45])[:, None, None]  # the pad
    return refl * 10000 * (1 + rng.normal(0, 0.003, refl.shape))


def raw_geotiff(path: Path, data: np.ndarray, crs="utm", transform="utm", descriptions=None, **extra) -> Path:
    """Write a raw GeoTIFF with any band count, dtype, CRS or transform ("utm": the default grid)."""
    import warnings

    import rasterio

    default_crs, default_transform = utm()
    profile = {"driver": "GTiff", "count": data.shape[0], "height": data.shape[1], "width": data.shape[2],
               "dtype": data.dtype.name}
    if crs is not None:
        profile["crs"] = default_crs if crs == "utm" else crs
    if transform is not None:
        profile["transform"] = default_transform if transform == "utm" else transform
    profile.update(extra)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(data)
            for i, d in enumerate(descriptions or [], start=1):
                dst.set_band_description(i, d)
    return path


@pytest.fixture
def write_geotiff(tmp_path):
    """Write a raw GeoTIFF with any band count, dtype, CRS or transform (for bad-input tests)."""

    def write(name="x.tif", data=None, crs="utm", transform="utm", descriptions=None, **extra):
        data = random_scene() if data is None else data
        if data.ndim == 2:
            data = data[None]
        return raw_geotiff(tmp_path / name, data, crs, transform, descriptions, **extra)

    return write


@pytest.fixture
def contract_scene(tmp_path):
    def write(name="ok.tif", data=None):
        crs, transform = utm()
        path = tmp_path / name
        write_scene(path, random_scene() if data is None else data, crs, transform)
        return path

    return write


# -- databases ---------------------------------------------------------------------
@pytest.fixture(scope="session")
def postgres_server():
    url = postgres_server_url()
    yield url
    stop_postgres_server()


@pytest.fixture
def postgres_url(postgres_server):
    """A fresh, empty database with PostGIS on the test server; dropped afterwards."""
    name = f"methane_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(postgres_server, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = sa.make_url(postgres_server).set(database=name)
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    with engine.connect() as conn:
        conn.execute(sa.text("CREATE EXTENSION IF NOT EXISTS postgis"))
    engine.dispose()
    yield url.render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'results.db'}"
    return request.getfixturevalue("postgres_url")
