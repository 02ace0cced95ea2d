"""The web app's settings: environment variables with defaults, no machine paths.

  TRITON_URL          Triton address (host:port); default localhost:8000 (http) / :8001 (grpc)
  TRITON_PROTOCOL     http | grpc (http)
  TRITON_MODEL        auto: the multi-pass model for an upload with a reference pass, else the
                      single-pass one (methane_seg); a model name uses that model for every upload
  TRITON_TIMEOUT      60 (seconds per request)
  TRITON_SHARED_MEMORY auto | system | none (auto): tiles through system shared memory when
                      Triton runs on this host (client/shm.py), else over the socket
  MAX_UPLOAD_MB       512
  DATA_DIR            ./var: the SQLite database and the results' files live here
  DATABASE_URL        sqlite:///$DATA_DIR/methane-seg.db; e.g. postgresql+psycopg://user@host/db
  SYNC_MAX_PIXELS     4194304 (2048 x 2048): larger scenes run as background jobs
  JOB_WORKERS         1 (background jobs run at the same time)
  PAGE_SIZE           20 (history and API pages)
  PREVIEW_SIZE        1024 (longest side of the previews shown on the page)
  API_KEY             unset; when set, the JSON API (/api/v1/*, but its OpenAPI document) needs
                      the header X-API-Key: <key> (or Authorization: Bearer <key>). docker-compose sets it.
"""

from __future__ import annotations

import os
from pathlib import Path

from client.shm import MODES


def _int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    try:
        return int(float(value)) if value else default
    except ValueError:
        raise ValueError(f"{name}={value!r} is not a number") from None


def _choice(name: str, choices: tuple[str, ...]) -> str:
    value = os.environ.get(name, "").strip() or choices[0]
    if value not in choices:
        raise ValueError(f"{name}={value!r} is not one of {', '.join(choices)}")
    return value


def settings_from_env() -> dict:
    env = os.environ.get
    data_dir = Path(env("DATA_DIR") or "var")
    return {
        "TRITON_URL": env("TRITON_URL") or None,
        "TRITON_PROTOCOL": env("TRITON_PROTOCOL", "http"),
        "TRITON_MODEL": env("TRITON_MODEL", "auto"),
        "TRITON_TIMEOUT": float(env("TRITON_TIMEOUT") or "60"),
        "TRITON_SHARED_MEMORY": _choice("TRITON_SHARED_MEMORY", MODES),
        "MAX_CONTENT_LENGTH": int(float(env("MAX_UPLOAD_MB") or "512") * 1024 * 1024),
        "DATA_DIR": str(data_dir),
        "DATABASE_URL": env("DATABASE_URL") or None,  # None: SQLite file under DATA_DIR
        "SYNC_MAX_PIXELS": _int("SYNC_MAX_PIXELS", 2048 * 2048),
        "JOB_WORKERS": _int("JOB_WORKERS", 1),
        "PAGE_SIZE": _int("PAGE_SIZE", 20),
        "PREVIEW_SIZE": _int("PREVIEW_SIZE", 1024),
        "API_KEY": env("API_KEY") or None,
    }


def database_url(config: dict) -> str:
    if config.get("DATABASE_URL"):
        return config["DATABASE_URL"]
    path = Path(config["DATA_DIR"]).resolve() / "methane-seg.db"
    return f"sqlite:///{path}"
