"""The HTML pages: upload (/), a result (/results/<id>), the history (/history) and a job's progress."""

from __future__ import annotations

import base64

from flask import Blueprint, current_app, redirect, render_template, request, url_for

from core.contract import BANDS
from webapp.errors import UploadError

bp = Blueprint("pages", __name__)


def page(template: str = "index.html", status: int = 200, **context):
    cfg = current_app.config
    context.setdefault("bands", BANDS)
    context.setdefault("max_mb", cfg["MAX_CONTENT_LENGTH"] // (1024 * 1024))
    context.setdefault("sync_side", int(cfg["SYNC_MAX_PIXELS"] ** 0.5))
    return render_template(template, **context), status


def _data_uri(path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()


def result_context(r, cached: bool = False, elapsed: float | None = None) -> dict:
    store = current_app.extensions["store"]
    pixel_area = abs((r.bounds[2] - r.bounds[0]) / r.width * (r.bounds[3] - r.bounds[1]) / r.height)
    return {
        "result": r,
        "filename": r.input_name,
        "plume_pixels": r.plume_pixels,
        "plume_area_ha": r.plume_pixels * pixel_area / 1e4,
        "cached": cached,
        "elapsed": r.timings.get("total_s", 0.0) if elapsed is None or not cached else elapsed,
        "overlay_rgb": _data_uri(store.path(r, "preview_rgb")),
        "overlay_swir": _data_uri(store.path(r, "preview_swir")),
        "downloads": [(f.kind, url_for("api.get_file", result_id=r.id, kind=f.kind)) for f in r.files
                      if f.kind in ("geojson", "mask", "prob", "png")],
    }


@bp.get("/")
def index():
    return page()


@bp.post("/")
def upload():
    service = current_app.extensions["service"]
    try:
        outcome = service.submit(service.receive(request))
    except UploadError as exc:
        return page(status=exc.status, error=exc.message)
    if outcome.job is not None:
        return redirect(url_for("pages.job_page", job_id=outcome.job.id), 303)
    return page(**result_context(outcome.result, outcome.cached, outcome.elapsed))


@bp.get("/results/<result_id>")
def result_page(result_id: str):
    r = current_app.extensions["store"].get(result_id)
    if r is None:
        return page(status=404, error=f"there is no result {result_id}")
    return page(**result_context(r))


@bp.get("/history")
def history():
    from webapp.api import paging

    try:
        number, per_page = paging()
    except UploadError as exc:
        return page("history.html", exc.status, error=exc.message, results=[], number=1, pages=1, total=0)
    rows, total = current_app.extensions["store"].page(number, per_page)
    pages = max(1, -(-total // per_page))
    return page("history.html", results=rows, number=number, pages=pages, total=total, per_page=per_page)


@bp.get("/jobs/<job_id>")
def job_page(job_id: str):
    job = current_app.extensions["jobs"].get(job_id)
    if job is None:
        return page(status=404, error=f"there is no job {job_id} (it may have been lost to a restart)")
    if job.status == "done" and job.result_id:
        return redirect(url_for("pages.result_page", result_id=job.result_id), 303)
    return page("job.html", job=job)
