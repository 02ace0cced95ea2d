"""Database connection and migrations.

A SQLite file under DATA_DIR by default, PostgreSQL (with PostGIS) through
DATABASE_URL, e.g. `postgresql+psycopg://methane@db.example/methane`. The schema
is Alembic's (webapp/migrations); the app upgrades to the newest revision at
start-up. By hand:

    python -m webapp.db upgrade     # or: current, downgrade REV
"""

from __future__ import annotations

import sys
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.orm import sessionmaker

MIGRATIONS = Path(__file__).parent / "migrations"


def make_engine(url: str) -> sa.Engine:
    if url.startswith("sqlite"):
        path = sa.make_url(url).database
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @sa.event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA journal_mode=WAL")  # readers do not wait for the writer
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        return engine
    return sa.create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5)


def alembic_config(engine: sa.Engine | None = None, connection=None):
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    if engine is not None:
        cfg.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False).replace("%", "%%"))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def migrate(engine: sa.Engine, revision: str = "head") -> None:
    """Upgrade the schema to `revision` (idempotent)."""
    from alembic import command

    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            # One migrator at a time when several app processes start together.
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(727001)"))
        command.upgrade(alembic_config(connection=conn), revision)


def current_revision(engine: sa.Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def ping(engine: sa.Engine) -> None:
    """Raise when the database cannot be reached."""
    with engine.connect() as conn:
        conn.execute(sa.text("SELECT 1"))


def session_factory(engine: sa.Engine) -> sessionmaker:
    return sessionmaker(engine, expire_on_commit=False)


def main(argv: list[str] | None = None) -> int:
    from alembic import command

    from webapp.config import database_url, settings_from_env

    args = sys.argv[1:] if argv is None else argv
    engine = make_engine(database_url(settings_from_env()))
    if not args or args[0] == "upgrade":
        migrate(engine, args[1] if len(args) > 1 else "head")
        print(f"database at revision {current_revision(engine)}")
    elif args[0] == "current":
        print(current_revision(engine) or "(empty)")
    elif args[0] == "downgrade" and len(args) == 2:
        with engine.begin() as conn:
            command.downgrade(alembic_config(connection=conn), args[1])
        print(f"database at revision {current_revision(engine) or '(empty)'}")
    else:
        print("usage: python -m webapp.db [upgrade [REV] | current | downgrade REV]", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
