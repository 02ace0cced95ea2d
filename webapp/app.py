"""The methane-seg web app: upload page, history, JSON API, health, readiness and metrics.

The app reaches Triton only through `client.segmenter.Segmenter`; the input
contract is checked by `core.contract`. Uploads are saved under generated
names, results (files + database rows) under DATA_DIR. Configuration comes
from the environment (see webapp/config.py and docs/webapp.md); `create_app`
takes overrides.

    create_app({"TRITON_URL": "localhost:8000", "DATABASE_URL": "postgresql+psycopg://..."})
"""

from __future__ import annotations

import logging

from flask import Flask, current_app, jsonify, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from client.segmenter import Segmenter
from webapp import api, db, pages
from webapp.config import database_url, settings_from_env
from webapp.errors import DATABASE_UNAVAILABLE, UploadError, database_unavailable
from webapp.jobs import JobRunner
from webapp.metrics import Metrics
from webapp.service import Service
from webapp.store import ResultStore

log = logging.getLogger(__name__)

# Re-exported for older callers.
__all__ = ["create_app", "settings_from_env", "UploadError"]


def make_segmenter(config: dict, timeout: float | None = None, retries: int = 3) -> Segmenter:
    return Segmenter(config["TRITON_URL"], config["TRITON_PROTOCOL"], model_name=config["TRITON_MODEL"],
                     timeout=config["TRITON_TIMEOUT"] if timeout is None else timeout, retries=retries,
                     shared_memory=config.get("TRITON_SHARED_MEMORY", "auto"))


def create_app(config: dict | None = None) -> Flask:
    app = Flask(__name__)
    app.config.update(settings_from_env())
    app.config.update(config or {})
    cfg = app.config

    engine = db.make_engine(database_url(cfg))
    db.migrate(engine)
    store = ResultStore(engine, cfg["DATA_DIR"])
    store.sweep()
    metrics = Metrics()
    metrics.init_app(app)
    jobs = JobRunner(cfg["JOB_WORKERS"], metrics)
    segmenter = make_segmenter(cfg)
    service = Service(cfg, segmenter, store, jobs, metrics)
    app.extensions.update(engine=engine, store=store, metrics=metrics, jobs=jobs, segmenter=segmenter,
                          service=service)

    app.register_blueprint(pages.bp)
    app.register_blueprint(api.bp)

    @app.get("/healthz")
    def healthz():
        return {"status": "ok"}

    @app.get("/readyz")
    def readyz():
        checks, ready = {}, True
        try:
            # A fresh client: the model version served now, not the one cached at start.
            info = make_segmenter(cfg, timeout=3.0, retries=1).model_info()
            checks["triton"] = {"ok": True, "model": service.segmenter.model_name, "version": info["version"]}
            if info["version"] != service.segmenter.model_info().get("version"):
                # A new model version is served: answer new uploads with it.
                service.segmenter = app.extensions["segmenter"] = make_segmenter(cfg)
        except Exception as exc:
            checks["triton"] = {"ok": False, "error": str(exc)[:300]}
            ready = False
        try:
            current = app.extensions["engine"]
            db.ping(current)
            checks["database"] = {"ok": True, "dialect": current.dialect.name}
        except Exception as exc:
            checks["database"] = {"ok": False, "error": str(exc).splitlines()[0][:300]}
            ready = False
        return jsonify({"status": "ready" if ready else "not ready", "checks": checks}), 200 if ready else 503

    def wants_json() -> bool:
        return request.path.startswith("/api/") or request.path in ("/readyz", "/healthz", "/metrics")

    @app.errorhandler(RequestEntityTooLarge)
    def too_large(_exc):
        message = f"the file is larger than the {cfg['MAX_CONTENT_LENGTH'] // (1024 * 1024)} MB limit"
        return api.error(message, 413) if wants_json() else pages.page(status=413, error=message)

    @app.errorhandler(HTTPException)
    def http_error(exc):
        code = exc.code or 400
        return api.error(exc.description, code) if wants_json() else pages.page(status=code, error=exc.description)

    @app.errorhandler(Exception)
    def internal_error(exc):
        if database_unavailable(exc):  # e.g. a GET while the database is down: retry later, not a bug
            log.warning("database unavailable on %s %s: %s", request.method, request.path,
                        str(exc).splitlines()[0][:300])
            return (api.error(DATABASE_UNAVAILABLE, 503) if wants_json()
                    else pages.page(status=503, error=DATABASE_UNAVAILABLE))
        log.exception("unhandled error on %s %s", request.method, request.path)
        message = "internal error; it has been logged"
        return api.error(message, 500) if wants_json() else pages.page(status=500, error=message)

    return app


def current_service() -> Service:
    return current_app.extensions["service"]
