"""The upload page: one GeoTIFF in, the segmented image out.

The app reaches Triton only through `client.segmenter.Segmenter`; the input
contract is checked by `client.contract`. Uploads are stored under generated
names in a private temporary folder and removed once answered.

Configuration (environment, with defaults):
  TRITON_URL       localhost:8000 (http) / localhost:8001 (grpc)
  TRITON_PROTOCOL  http
  TRITON_MODEL     methane_seg
  MAX_UPLOAD_MB    512
  TRITON_TIMEOUT   60 (seconds per request)
"""

from __future__ import annotations

import base64
import os
import tempfile
import time
import uuid
from pathlib import Path

from flask import Flask, render_template, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from client.contract import BANDS, ContractError, NotGeoTIFF
from client.outputs import overlay_png
from client.segmenter import InferenceFailed, Segmenter, TritonUnavailable


def settings_from_env() -> dict:
    return {
        "TRITON_URL": os.environ.get("TRITON_URL") or None,
        "TRITON_PROTOCOL": os.environ.get("TRITON_PROTOCOL", "http"),
        "TRITON_MODEL": os.environ.get("TRITON_MODEL", "methane_seg"),
        "TRITON_TIMEOUT": float(os.environ.get("TRITON_TIMEOUT", "60")),
        "MAX_CONTENT_LENGTH": int(float(os.environ.get("MAX_UPLOAD_MB", "512")) * 1024 * 1024),
    }


class UploadError(Exception):
    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.message = message
        self.status = status


def create_app(config: dict | None = None) -> Flask:
    app = Flask(__name__)
    app.config.update(settings_from_env())
    app.config.update(config or {})
    segmenter = Segmenter(
        app.config["TRITON_URL"],
        app.config["TRITON_PROTOCOL"],
        model_name=app.config["TRITON_MODEL"],
        timeout=app.config["TRITON_TIMEOUT"],
    )
    app.extensions["segmenter"] = segmenter

    def page(status: int = 200, **context):
        context.setdefault("bands", BANDS)
        context.setdefault("max_mb", app.config["MAX_CONTENT_LENGTH"] // (1024 * 1024))
        return render_template("index.html", **context), status

    @app.get("/")
    def index():
        return page()

    @app.post("/")
    def upload():
        try:
            result, elapsed, filename = _segment_upload(segmenter)
        except UploadError as exc:
            return page(exc.status, error=exc.message)
        scene = result.scene
        return page(
            filename=filename,
            width=scene.width,
            height=scene.height,
            crs=scene.crs.to_string(),
            plume_pixels=result.plume_pixels,
            plume_area_ha=result.plume_pixels * abs(scene.transform.a * scene.transform.e) / 1e4,
            max_probability=float(result.probability[scene.valid].max()) if scene.valid.any() else 0.0,
            threshold=result.threshold,
            model=f"{result.model_name} v{result.model_version}",
            elapsed=elapsed,
            overlay_rgb=base64.b64encode(overlay_png(result, "rgb")).decode(),
            overlay_swir=base64.b64encode(overlay_png(result, "swir")).decode(),
        )

    @app.errorhandler(RequestEntityTooLarge)
    def too_large(_exc):
        return page(413, error=f"the file is larger than the {app.config['MAX_CONTENT_LENGTH'] // (1024 * 1024)} MB limit")

    @app.errorhandler(HTTPException)
    def http_error(exc):
        return page(exc.code or 400, error=exc.description)

    @app.get("/healthz")
    def healthz():
        return {"status": "ok"}

    return app


def _segment_upload(segmenter: Segmenter):
    """Save the one uploaded file under a generated name, segment it, remove it."""
    files = request.files.getlist("file")
    if not files or not files[0] or not files[0].filename:
        raise UploadError("choose one GeoTIFF file to upload", 400)
    if len(files) > 1:
        raise UploadError("upload one GeoTIFF per request", 400)
    upload = files[0]
    display_name = Path(upload.filename.replace("\\", "/")).name[:200]
    with tempfile.TemporaryDirectory(prefix="methane-seg-upload-") as tmp:
        path = Path(tmp) / f"{uuid.uuid4().hex}.tif"
        upload.save(path)
        t0 = time.perf_counter()
        try:
            result = segmenter.segment(path)
        except NotGeoTIFF as exc:
            raise UploadError(_named(str(exc), path, display_name), 415) from None
        except ContractError as exc:
            raise UploadError(_named(str(exc), path, display_name), 422) from None
        except TritonUnavailable as exc:
            raise UploadError(f"the model server is unavailable, try again shortly ({exc})", 503) from None
        except InferenceFailed as exc:
            raise UploadError(str(exc), 502) from None
        result.scene.name = Path(display_name).stem or "upload"
    return result, time.perf_counter() - t0, display_name


def _named(message: str, path: Path, display_name: str) -> str:
    """Error messages name the user's file, never our generated path."""
    return message.replace(str(path), display_name).replace(path.name, display_name)
