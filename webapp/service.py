"""Answering an upload: save it, check it, answer from the store or run it, now or as a job.

The pages (webapp/pages.py) and the JSON API (webapp/api.py) both go through
`Service.submit`, so they answer the same upload the same way.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from flask import Request

from core.contract import ContractError, open_scene
from client.segmenter import Segmenter
from webapp import pipeline
from webapp.errors import UploadError, user_error
from webapp.jobs import Job, JobRunner, new_job_id
from webapp.models import Result
from webapp.pipeline import Upload
from webapp.store import ResultStore

log = logging.getLogger(__name__)


@dataclass
class Outcome:
    result: Result | None = None
    job: Job | None = None
    cached: bool = False
    elapsed: float = 0.0


class Service:
    def __init__(self, config: dict, segmenter: Segmenter, store: ResultStore, jobs: JobRunner, metrics):
        self.config = config
        self.segmenter = segmenter
        self.store = store
        self.jobs = jobs
        self.metrics = metrics
        self.upload_dir = Path(config["DATA_DIR"]).resolve() / "uploads"
        self.upload_dir.mkdir(parents=True, exist_ok=True)
        for stale in self.upload_dir.glob("*.tif"):  # uploads of jobs lost to a restart
            if time.time() - stale.stat().st_mtime > 3600:
                stale.unlink(missing_ok=True)

    # -- receiving ------------------------------------------------------------
    def receive(self, request: Request) -> Upload:
        """Save the uploaded scene (form field 'file') and its optional reference pass (field
        'reference') under generated names, hashing them on the way."""
        files = request.files.getlist("file")
        if not files or not files[0] or not files[0].filename:
            raise UploadError("choose one GeoTIFF file to upload (form field 'file')", 400)
        refs = [f for f in request.files.getlist("reference") if f and f.filename]
        fields = [k for k in request.files if any(f and f.filename for f in request.files.getlist(k))]
        if len(files) > 1 or len(refs) > 1 or set(fields) - {"file", "reference"}:
            raise UploadError("upload one GeoTIFF per request (form field 'file'), and at most one reference "
                              "pass of it (form field 'reference')", 400)
        upload = self._save(files[0])
        if refs:
            try:
                upload.reference = self._save(refs[0])
                upload.seconds += upload.reference.seconds
            except BaseException:
                upload.unlink()
                raise
        return upload

    def _save(self, upload) -> Upload:
        t0 = time.perf_counter()
        name = Path(upload.filename.replace("\\", "/")).name[:200] or "upload.tif"
        fd, tmp = tempfile.mkstemp(prefix="upload-", suffix=".tif", dir=self.upload_dir)
        h, size = hashlib.sha256(), 0
        try:
            with os.fdopen(fd, "wb") as out:
                while block := upload.stream.read(1 << 20):
                    h.update(block)
                    out.write(block)
                    size += len(block)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return Upload(path=Path(tmp), name=name, sha256=h.hexdigest(), bytes=size, seconds=time.perf_counter() - t0)

    # -- answering ------------------------------------------------------------
    def submit(self, upload: Upload) -> Outcome:
        """Answer a saved upload: from the store, now, or as a background job.

        Removes the upload once it is no longer needed. Raises UploadError.
        """
        t0 = time.perf_counter()
        handed_to_job = False
        try:
            try:
                # the contract's header checks (and the reference's), no pixels read
                scene = open_scene(upload.path, upload.reference.path if upload.reference else None)
                model = self.segmenter.transport_for(scene)
                info = model.info()
                existing = self.store.find(upload.key, model.model_name, info["version"])
            except Exception as exc:
                raise self._error(exc, upload) from None
            if existing is not None:
                self.metrics.results.labels("cached").inc()
                return Outcome(result=existing, cached=True, elapsed=time.perf_counter() - t0)
            if scene.width * scene.height > self.config["SYNC_MAX_PIXELS"]:
                key = (upload.key, model.model_name, info["version"])
                running = self.jobs.in_flight(key)
                if running is not None:
                    return Outcome(job=running)
                job = Job(id=new_job_id(), input_name=upload.name, width=scene.width, height=scene.height, key=key)
                job.tiles_total = pipeline.expected_tiles(self.segmenter, scene.height, scene.width)
                self.jobs.submit(job, lambda j: self._run_job(j, upload), cleanup=upload.unlink)
                handed_to_job = True
                return Outcome(job=job)
            try:
                result, seg = pipeline.run(self.segmenter, upload, self.store, self.config["PREVIEW_SIZE"])
            except Exception as exc:
                raise self._error(exc, upload) from None
            self._observe(result, "sync")
            return Outcome(result=result, elapsed=time.perf_counter() - t0)
        finally:
            if not handed_to_job:
                upload.unlink()

    def _run_job(self, job: Job, upload: Upload) -> str:
        def on_tiles(n):
            job.tiles_done += n

        def stage(name):
            job.stage = name

        try:
            result, _ = pipeline.run(self.segmenter, upload, self.store, self.config["PREVIEW_SIZE"], stage=stage,
                                     on_tiles=on_tiles)
        except Exception as exc:
            raise self._error(exc, upload) from None
        self._observe(result, "job")
        return result.id

    def _observe(self, result: Result, mode: str) -> None:
        self.metrics.results.labels("computed").inc()
        self.metrics.inference.labels(mode).observe(result.timings.get("inference_s", 0.0))
        self.metrics.result_time.labels(mode).observe(result.timings.get("total_s", 0.0))
        self.metrics.plumes.inc(result.plume_count)

    @staticmethod
    def _error(exc: Exception, upload: Upload) -> UploadError:
        message, status = user_error(exc)
        if status == 500:
            log.exception("processing %s failed", upload.name)
        if isinstance(exc, ContractError) or status != 500:
            # Messages name the user's file, never our generated path.
            message = message.replace(str(upload.path), upload.name).replace(upload.path.name, upload.name)
            if upload.reference is not None:
                ref = upload.reference
                message = message.replace(str(ref.path), ref.name).replace(ref.path.name, ref.name)
        return UploadError(message, status)
