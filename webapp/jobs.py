"""Background jobs for scenes too large to answer within one request.

A job has an id, a stage (queued, segmenting, writing outputs, storing, done,
failed) and a progress fraction from the tiles answered so far. Jobs run on a
small thread pool (JOB_WORKERS); their state lives in this process, the result
they make lives in the database. A job lost to a restart is simply gone (its
upload is removed at the next start); its result, if committed, stays.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable

log = logging.getLogger(__name__)

KEEP_FINISHED = 1000


@dataclass
class Job:
    id: str
    input_name: str
    width: int
    height: int
    key: tuple = ()
    status: str = "queued"  # queued | running | done | failed
    stage: str = "queued"
    tiles_done: int = 0
    tiles_total: int = 0
    result_id: str | None = None
    error: str | None = None
    error_status: int | None = None
    created_at: float = field(default_factory=time.time)
    finished_at: float | None = None

    @property
    def progress(self) -> float:
        if self.status == "done":
            return 1.0
        if not self.tiles_total:
            return 0.0
        # Tiles are most of the work; the files and the database the last 10 %.
        frac = 0.9 * min(1.0, self.tiles_done / self.tiles_total)
        return round(frac + (0.05 if self.stage in ("writing outputs", "storing") else 0.0), 3)

    def as_dict(self) -> dict:
        return {"id": self.id, "status": self.status, "stage": self.stage, "progress": self.progress,
                "tiles_done": self.tiles_done, "tiles_total": self.tiles_total, "input_name": self.input_name,
                "width": self.width, "height": self.height, "result_id": self.result_id,
                "error": self.error, "created_at": self.created_at, "finished_at": self.finished_at}


class JobRunner:
    def __init__(self, workers: int = 1, metrics=None):
        self._pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="methane-seg-job")
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._lock = threading.Lock()
        self._metrics = metrics

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def in_flight(self, key: tuple) -> Job | None:
        """A queued or running job for the same content and model, if any."""
        with self._lock:
            return next((j for j in self._jobs.values() if j.key == key and j.status in ("queued", "running")), None)

    def submit(self, job: Job, work: Callable[[Job], str], cleanup: Callable[[], None] | None = None) -> Job:
        """Run `work(job)` -> result id in the background; `cleanup` runs after it either way."""
        with self._lock:
            self._jobs[job.id] = job
            finished = [k for k, j in self._jobs.items() if j.finished_at is not None]
            for k in finished[: max(0, len(finished) - KEEP_FINISHED)]:
                del self._jobs[k]
        if self._metrics:
            self._metrics.jobs_in_flight.inc()
        self._pool.submit(self._run, job, work, cleanup)
        return job

    def _run(self, job: Job, work, cleanup) -> None:
        from webapp.errors import user_error

        job.status = job.stage = "running"
        try:
            job.result_id = work(job)
            job.status = job.stage = "done"
        except Exception as exc:  # the job reports it; the process goes on
            job.error, job.error_status = user_error(exc)
            if job.error_status >= 500 and job.error_status not in (502, 503):
                log.exception("job %s failed", job.id)
            job.status = job.stage = "failed"
        finally:
            job.finished_at = time.time()
            if cleanup:
                try:
                    cleanup()
                except Exception:
                    log.exception("job %s: cleanup failed", job.id)
            if self._metrics:
                self._metrics.jobs_in_flight.dec()
                self._metrics.jobs.labels(job.status).inc()

    def shutdown(self, wait: bool = False) -> None:
        self._pool.shutdown(wait=wait, cancel_futures=not wait)


def new_job_id() -> str:
    return uuid.uuid4().hex
