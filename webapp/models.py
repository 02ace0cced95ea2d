"""The results database: one row per segmented upload, its plumes and its files.

Geometries are GeoJSON in WGS84 lon/lat: on PostgreSQL they are PostGIS
`geometry(..., 4326)` columns (written with ST_GeomFromGeoJSON, read back with
ST_AsGeoJSON, indexed with GiST); on SQLite they are GeoJSON text.
The schema is created and changed only by the Alembic migrations in
webapp/migrations/ (`webapp.db.migrate`), never by `create_all`.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator, UserDefinedType

SRID = 4326


class PostGISGeometry(UserDefinedType):
    """A PostGIS geometry column that takes and gives GeoJSON geometries (dicts)."""

    cache_ok = True

    def __init__(self, geometry_type: str = "GEOMETRY", srid: int = SRID):
        self.geometry_type = geometry_type
        self.srid = srid

    def get_col_spec(self, **kw) -> str:
        return f"geometry({self.geometry_type},{self.srid})"

    def bind_expression(self, bindvalue):
        return sa.func.ST_SetSRID(sa.func.ST_GeomFromGeoJSON(bindvalue), sa.literal_column(str(self.srid)))

    def column_expression(self, col):
        return sa.func.ST_AsGeoJSON(col, sa.literal_column("7"), type_=self)

    def bind_processor(self, dialect):
        return lambda value: None if value is None else json.dumps(value, separators=(",", ":"))

    def result_processor(self, dialect, coltype):
        return lambda value: json.loads(value) if isinstance(value, str) else value


class GeoJSON(TypeDecorator):
    """A GeoJSON geometry (a dict) stored as text (SQLite and other databases)."""

    impl = sa.Text
    cache_ok = True

    def process_bind_param(self, value, dialect):
        return None if value is None else json.dumps(value, separators=(",", ":"))

    def process_result_value(self, value, dialect):
        return None if value is None else json.loads(value)


def geojson_geometry(geometry_type: str = "GEOMETRY"):
    """GeoJSON text in general, a PostGIS geometry(geometry_type, 4326) column on PostgreSQL."""
    return GeoJSON().with_variant(PostGISGeometry(geometry_type), "postgresql")


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Base(DeclarativeBase):
    pass


class Result(Base):
    __tablename__ = "results"
    __table_args__ = (
        # An identical upload under the same model version is answered from here.
        sa.UniqueConstraint("content_sha256", "model_name", "model_version", name="uq_results_content_model"),
        sa.Index("ix_results_created_at", "created_at"),
    )

    id: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), default=utcnow, nullable=False)
    input_name: Mapped[str] = mapped_column(sa.String(255), nullable=False)
    input_bytes: Mapped[int] = mapped_column(sa.BigInteger, nullable=False)
    content_sha256: Mapped[str] = mapped_column(sa.String(64), nullable=False)
    width: Mapped[int] = mapped_column(sa.Integer, nullable=False)
    height: Mapped[int] = mapped_column(sa.Integer, nullable=False)
    crs: Mapped[str] = mapped_column(sa.Text, nullable=False)
    # Bounds in the scene's CRS (left, bottom, right, top) and its footprint in WGS84.
    bounds: Mapped[list] = mapped_column(sa.JSON, nullable=False)
    footprint: Mapped[dict | None] = mapped_column(geojson_geometry("POLYGON"))
    model_name: Mapped[str] = mapped_column(sa.String(128), nullable=False)
    model_version: Mapped[str] = mapped_column(sa.String(32), nullable=False)
    # The reference pass a multi-pass model compared the scene with (None: a single-pass model ran).
    reference_name: Mapped[str | None] = mapped_column(sa.String(255), nullable=True)
    threshold: Mapped[float] = mapped_column(sa.Float, nullable=False)
    plume_pixels: Mapped[int] = mapped_column(sa.BigInteger, nullable=False)
    plume_count: Mapped[int] = mapped_column(sa.Integer, nullable=False)
    max_probability: Mapped[float] = mapped_column(sa.Float, nullable=False)
    # Seconds: upload, inference, plumes, outputs, total; and the tile count.
    timings: Mapped[dict] = mapped_column(sa.JSON, nullable=False)
    # Where the files live, relative to DATA_DIR.
    directory: Mapped[str] = mapped_column(sa.String(255), nullable=False)

    plumes: Mapped[list["PlumeRecord"]] = relationship(
        back_populates="result", cascade="all, delete-orphan", order_by="PlumeRecord.number")
    files: Mapped[list["ResultFile"]] = relationship(
        back_populates="result", cascade="all, delete-orphan", order_by="ResultFile.kind")

    def file(self, kind: str) -> "ResultFile | None":
        return next((f for f in self.files if f.kind == kind), None)


class PlumeRecord(Base):
    __tablename__ = "plumes"
    __table_args__ = (sa.UniqueConstraint("result_id", "number", name="uq_plumes_result_number"),)

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    result_id: Mapped[str] = mapped_column(sa.ForeignKey("results.id", ondelete="CASCADE"), nullable=False,
                                           index=True)
    number: Mapped[int] = mapped_column(sa.Integer, nullable=False)  # 1 = largest plume of the scene
    pixels: Mapped[int] = mapped_column(sa.Integer, nullable=False)
    area_m2: Mapped[float] = mapped_column(sa.Float, nullable=False)
    length_m: Mapped[float] = mapped_column(sa.Float, nullable=False)
    mean_probability: Mapped[float] = mapped_column(sa.Float, nullable=False)
    max_probability: Mapped[float] = mapped_column(sa.Float, nullable=False)
    source_lon: Mapped[float] = mapped_column(sa.Float, nullable=False)
    source_lat: Mapped[float] = mapped_column(sa.Float, nullable=False)
    source_row: Mapped[float] = mapped_column(sa.Float, nullable=False)
    source_col: Mapped[float] = mapped_column(sa.Float, nullable=False)
    geometry: Mapped[dict] = mapped_column(geojson_geometry("GEOMETRY"), nullable=False)
    source: Mapped[dict] = mapped_column(geojson_geometry("POINT"), nullable=False)

    result: Mapped[Result] = relationship(back_populates="plumes")


class ResultFile(Base):
    __tablename__ = "result_files"
    __table_args__ = (sa.UniqueConstraint("result_id", "kind", name="uq_result_files_kind"),)

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    result_id: Mapped[str] = mapped_column(sa.ForeignKey("results.id", ondelete="CASCADE"), nullable=False,
                                           index=True)
    kind: Mapped[str] = mapped_column(sa.String(32), nullable=False)  # mask, prob, geojson, overlay, ...
    filename: Mapped[str] = mapped_column(sa.String(255), nullable=False)  # inside Result.directory
    media_type: Mapped[str] = mapped_column(sa.String(64), nullable=False)
    bytes: Mapped[int] = mapped_column(sa.BigInteger, nullable=False)
    sha256: Mapped[str] = mapped_column(sa.String(64), nullable=False)

    result: Mapped[Result] = relationship(back_populates="files")
