"""Results, their plumes (PostGIS geometry on PostgreSQL) and their files.

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""
from alembic import op
import sqlalchemy as sa

from webapp.models import geojson_geometry

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    if postgres:
        op.execute("CREATE EXTENSION IF NOT EXISTS postgis")
    op.create_table(
        "results",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("input_name", sa.String(255), nullable=False),
        sa.Column("input_bytes", sa.BigInteger, nullable=False),
        sa.Column("content_sha256", sa.String(64), nullable=False),
        sa.Column("width", sa.Integer, nullable=False),
        sa.Column("height", sa.Integer, nullable=False),
        sa.Column("crs", sa.Text, nullable=False),
        sa.Column("bounds", sa.JSON, nullable=False),
        sa.Column("footprint", geojson_geometry("POLYGON")),
        sa.Column("model_name", sa.String(128), nullable=False),
        sa.Column("model_version", sa.String(32), nullable=False),
        sa.Column("threshold", sa.Float, nullable=False),
        sa.Column("plume_pixels", sa.BigInteger, nullable=False),
        sa.Column("plume_count", sa.Integer, nullable=False),
        sa.Column("max_probability", sa.Float, nullable=False),
        sa.Column("timings", sa.JSON, nullable=False),
        sa.Column("directory", sa.String(255), nullable=False),
        sa.UniqueConstraint("content_sha256", "model_name", "model_version", name="uq_results_content_model"),
    )
    op.create_index("ix_results_created_at", "results", ["created_at"])
    op.create_table(
        "plumes",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("result_id", sa.String(32), sa.ForeignKey("results.id", ondelete="CASCADE"), nullable=False),
        sa.Column("number", sa.Integer, nullable=False),
        sa.Column("pixels", sa.Integer, nullable=False),
        sa.Column("area_m2", sa.Float, nullable=False),
        sa.Column("length_m", sa.Float, nullable=False),
        sa.Column("mean_probability", sa.Float, nullable=False),
        sa.Column("max_probability", sa.Float, nullable=False),
        sa.Column("source_lon", sa.Float, nullable=False),
        sa.Column("source_lat", sa.Float, nullable=False),
        sa.Column("source_row", sa.Float, nullable=False),
        sa.Column("source_col", sa.Float, nullable=False),
        sa.Column("geometry", geojson_geometry("GEOMETRY"), nullable=False),
        sa.Column("source", geojson_geometry("POINT"), nullable=False),
        sa.UniqueConstraint("result_id", "number", name="uq_plumes_result_number"),
    )
    op.create_index("ix_plumes_result_id", "plumes", ["result_id"])
    op.create_table(
        "result_files",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("result_id", sa.String(32), sa.ForeignKey("results.id", ondelete="CASCADE"), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("filename", sa.String(255), nullable=False),
        sa.Column("media_type", sa.String(64), nullable=False),
        sa.Column("bytes", sa.BigInteger, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.UniqueConstraint("result_id", "kind", name="uq_result_files_kind"),
    )
    op.create_index("ix_result_files_result_id", "result_files", ["result_id"])
    if postgres:
        op.create_index("ix_plumes_geometry", "plumes", ["geometry"], postgresql_using="gist")
        op.create_index("ix_plumes_source", "plumes", ["source"], postgresql_using="gist")
        op.create_index("ix_results_footprint", "results", ["footprint"], postgresql_using="gist")


def downgrade() -> None:
    op.drop_table("result_files")
    op.drop_table("plumes")
    op.drop_index("ix_results_created_at", table_name="results")
    op.drop_table("results")
