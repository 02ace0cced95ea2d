"""Results on disk and in the database, committed together or not at all.

A result's files are written into a staging folder (DATA_DIR/results/.staging-<id>),
flushed to disk, and moved to DATA_DIR/results/<id> in one rename; only then is
its database row committed. A crash before the commit leaves a folder without a
row: nobody sees it, and `sweep` removes it at the next start. The database is
what says a result exists.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import time
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import selectinload

from webapp.models import PlumeRecord, Result, ResultFile

log = logging.getLogger(__name__)

RESULT_ID = re.compile(r"^[0-9a-f]{32}$")
STAGING_PREFIX = ".staging-"

MEDIA_TYPES = {
    ".tif": "image/tiff; application=geotiff; profile=cloud-optimized",
    ".png": "image/png",
    ".geojson": "application/geo+json",
}


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class ResultStore:
    def __init__(self, engine: sa.Engine, data_dir: str | Path):
        from webapp.db import session_factory

        self.engine = engine
        self.Session = session_factory(engine)
        self.root = Path(data_dir).resolve() / "results"
        self.root.mkdir(parents=True, exist_ok=True)

    # -- reading ------------------------------------------------------------
    def _query(self):
        return sa.select(Result).options(selectinload(Result.plumes), selectinload(Result.files))

    def get(self, result_id: str) -> Result | None:
        if not RESULT_ID.match(result_id or ""):
            return None
        with self.Session() as s:
            return s.scalars(self._query().where(Result.id == result_id)).first()

    def find(self, content_sha256: str, model_name: str, model_version: str) -> Result | None:
        with self.Session() as s:
            return s.scalars(self._query().where(
                Result.content_sha256 == content_sha256, Result.model_name == model_name,
                Result.model_version == model_version)).first()

    def page(self, page: int, per_page: int) -> tuple[list[Result], int]:
        """Results newest first: one page of them, and how many there are in all."""
        with self.Session() as s:
            total = s.scalar(sa.select(sa.func.count()).select_from(Result))
            rows = s.scalars(self._query().order_by(Result.created_at.desc(), Result.id)
                             .offset((page - 1) * per_page).limit(per_page)).all()
        return list(rows), int(total or 0)

    def path(self, result: Result, kind: str) -> Path | None:
        f = result.file(kind)
        return None if f is None else self.root / result.directory / f.filename

    # -- writing ------------------------------------------------------------
    def staging_dir(self, result_id: str) -> Path:
        path = self.root / f"{STAGING_PREFIX}{result_id}"
        path.mkdir(parents=True, exist_ok=False)
        return path

    def commit(self, result: Result, plumes: list[PlumeRecord], staged: Path, files: dict[str, Path]) -> Result:
        """Move the staged files into place, then commit the rows; returns the stored result.

        When an identical result (same content, model and version) was committed in
        the meantime, the staged files are dropped and that result is returned.
        """
        final = self.root / result.id
        moved = False
        try:
            result.directory = result.id
            result.files = []
            for kind, path in files.items():
                if path.parent != staged or not path.is_file():
                    raise ValueError(f"{path} is not a staged file")
                _fsync(path)
                result.files.append(ResultFile(
                    kind=kind, filename=path.name, bytes=path.stat().st_size, sha256=file_sha256(path),
                    media_type=MEDIA_TYPES.get(path.suffix, "application/octet-stream")))
            result.plumes = plumes
            _fsync(staged)
            os.replace(staged, final)  # one rename: all the files or none
            moved = True
            _fsync(self.root)
            with self.Session() as s:
                s.add(result)
                s.commit()
        except IntegrityError:
            shutil.rmtree(final, ignore_errors=True)
            shutil.rmtree(staged, ignore_errors=True)
            existing = self.find(result.content_sha256, result.model_name, result.model_version)
            if existing is None:
                raise
            return existing
        except BaseException:
            shutil.rmtree(staged, ignore_errors=True)
            if moved:
                # The commit failed, or its answer was lost (the database went away): whether the
                # row landed is unknown, so the folder stays; `sweep` removes it if no row names it.
                log.warning("result %s: the database commit failed; its folder is left to sweep", result.id)
            else:
                shutil.rmtree(final, ignore_errors=True)
            raise
        return self.get(result.id)

    def discard(self, staged: Path) -> None:
        shutil.rmtree(staged, ignore_errors=True)

    def sweep(self, min_age_s: float = 3600.0) -> list[str]:
        """Remove folders a crash left behind: staging folders and result folders without a row.

        Only folders older than `min_age_s`, so that another process's work in
        progress is left alone.
        """
        now = time.time()
        with self.Session() as s:
            known = set(s.scalars(sa.select(Result.directory)).all())
        removed = []
        for path in self.root.iterdir():
            if not path.is_dir() or now - path.stat().st_mtime < min_age_s:
                continue
            name = path.name
            staged = name.startswith(STAGING_PREFIX)
            if staged or (RESULT_ID.match(name) and name not in known):
                shutil.rmtree(path, ignore_errors=True)
                removed.append(name)
        if removed:
            log.warning("removed %d unfinished result folder(s) left by an earlier crash", len(removed))
        return removed
