"""The JSON API, version 1 (described at /api/v1/openapi.json).

  POST /api/v1/segment              multipart form, file field `file`: 201 result | 200 stored result | 202 job
  GET  /api/v1/results/<id>         one result
  GET  /api/v1/results?page=&per_page=   results, newest first
  GET  /api/v1/results/<id>/files/<kind> a result's file (mask, prob, geojson, png, preview_rgb, preview_swir)
  GET  /api/v1/jobs/<id>            a background job's progress (and its result id when done)
"""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify, request, send_file, url_for

from core.segmentation import mode_of
from webapp.errors import UploadError
from webapp.pipeline import DOWNLOAD_SUFFIX
from webapp.openapi import MAX_PAGE, MAX_PER_PAGE, openapi_document

bp = Blueprint("api", __name__, url_prefix="/api/v1")

PUBLIC_ENDPOINTS = {"api.openapi"}  # the API's description stays readable without a key


@bp.before_request
def require_api_key():
    """With API_KEY set, every API call but the OpenAPI document needs `X-API-Key: <key>`
    (or `Authorization: Bearer <key>`); 401 otherwise. Unset (the local default), the API is open."""
    import hmac

    key = current_app.config.get("API_KEY")
    if not key or request.endpoint in PUBLIC_ENDPOINTS:
        return None
    given = request.headers.get("X-API-Key", "")
    auth = request.headers.get("Authorization", "")
    if not given and auth.lower().startswith("bearer "):
        given = auth[7:].strip()
    if given and hmac.compare_digest(given.encode(), key.encode()):
        return None
    return error("a valid API key is required (header X-API-Key)", 401)


def error(message: str, status: int):
    return jsonify({"error": {"status": status, "message": message}}), status


def _iso(dt) -> str:
    return dt.isoformat().replace("+00:00", "Z") if dt.tzinfo else dt.isoformat() + "Z"


def plume_json(p) -> dict:
    return {"id": p.number, "source": {"lon": p.source_lon, "lat": p.source_lat,
                                       "row": p.source_row, "col": p.source_col},
            "area_m2": p.area_m2, "length_m": p.length_m, "pixels": p.pixels,
            "confidence": {"mean": p.mean_probability, "max": p.max_probability},
            "geometry": p.geometry}


def result_json(r, cached: bool | None = None, full: bool = True) -> dict:
    d = {
        "id": r.id,
        "created_at": _iso(r.created_at),
        "input": {"name": r.input_name, "bytes": r.input_bytes, "sha256": r.content_sha256,
                  "width": r.width, "height": r.height, "crs": r.crs, "bounds": r.bounds},
        "model": {"name": r.model_name, "version": r.model_version, "threshold": r.threshold,
                  "mode": mode_of(r.reference_name), "reference": r.reference_name},
        "plume_pixels": r.plume_pixels,
        "plume_count": r.plume_count,
        "max_probability": r.max_probability,
        "timings": r.timings,
        "links": {"self": url_for("api.get_result", result_id=r.id, _external=True),
                  "page": url_for("pages.result_page", result_id=r.id, _external=True)},
    }
    if full:
        d["input"]["footprint"] = r.footprint
        d["plumes"] = [plume_json(p) for p in r.plumes]
        d["files"] = {f.kind: {"url": url_for("api.get_file", result_id=r.id, kind=f.kind, _external=True),
                               "media_type": f.media_type, "bytes": f.bytes, "sha256": f.sha256}
                      for f in r.files}
    if cached is not None:
        d["cached"] = cached
    return d


def job_json(job) -> dict:
    d = job.as_dict()
    d["links"] = {"self": url_for("api.get_job", job_id=job.id, _external=True),
                  "page": url_for("pages.job_page", job_id=job.id, _external=True)}
    if job.result_id:
        d["links"]["result"] = url_for("api.get_result", result_id=job.result_id, _external=True)
    return d


def paging() -> tuple[int, int]:
    cfg = current_app.config
    try:
        page = int(request.args.get("page", 1))
        per_page = int(request.args.get("per_page", cfg["PAGE_SIZE"]))
    except ValueError:
        raise UploadError("page and per_page must be whole numbers", 400) from None
    if not 1 <= page <= MAX_PAGE or not 1 <= per_page <= MAX_PER_PAGE:
        raise UploadError(f"page must be 1 to {MAX_PAGE}, per_page 1 to {MAX_PER_PAGE}", 400)
    return page, per_page


@bp.errorhandler(UploadError)
def _upload_error(exc: UploadError):
    return error(exc.message, exc.status)


@bp.get("/openapi.json")
def openapi():
    return jsonify(openapi_document(api_key=bool(current_app.config.get("API_KEY"))))


@bp.post("/segment")
def segment():
    service = current_app.extensions["service"]
    outcome = service.submit(service.receive(request))
    if outcome.job is not None:
        body = job_json(outcome.job)
        return jsonify(body), 202, {"Location": body["links"]["self"]}
    r = outcome.result
    body = result_json(r, cached=outcome.cached)
    return jsonify(body), (200 if outcome.cached else 201), {"Location": body["links"]["self"]}


@bp.get("/results/<result_id>")
def get_result(result_id: str):
    r = current_app.extensions["store"].get(result_id)
    if r is None:
        return error(f"no result {result_id!r}", 404)
    return jsonify(result_json(r))


@bp.get("/results")
def list_results():
    page, per_page = paging()
    rows, total = current_app.extensions["store"].page(page, per_page)
    pages = max(1, -(-total // per_page))
    body = {"page": page, "per_page": per_page, "total": total, "pages": pages,
            "results": [result_json(r, full=False) for r in rows], "links": {}}
    if page < pages:
        body["links"]["next"] = url_for("api.list_results", page=page + 1, per_page=per_page, _external=True)
    if page > 1:
        body["links"]["prev"] = url_for("api.list_results", page=min(page - 1, pages), per_page=per_page,
                                        _external=True)
    return jsonify(body)


@bp.get("/results/<result_id>/files/<kind>")
def get_file(result_id: str, kind: str):
    store = current_app.extensions["store"]
    r = store.get(result_id)
    if r is None:
        return error(f"no result {result_id!r}", 404)
    path = store.path(r, kind)
    if path is None:
        kinds = ", ".join(f.kind for f in r.files)
        return error(f"result {result_id} has no {kind!r} file (it has {kinds})", 404)
    f = r.file(kind)
    stem = r.input_name.rsplit(".", 1)[0] or "result"
    return send_file(path, mimetype=f.media_type.split(";")[0], as_attachment=kind in ("mask", "prob", "geojson")
                     or request.args.get("download") == "1",
                     download_name=f"{stem}{DOWNLOAD_SUFFIX.get(kind, '')}", etag=f.sha256, max_age=3600)


@bp.get("/jobs/<job_id>")
def get_job(job_id: str):
    job = current_app.extensions["jobs"].get(job_id)
    if job is None:
        return error(f"no job {job_id!r} (jobs are kept by the process that runs them)", 404)
    return jsonify(job_json(job))
