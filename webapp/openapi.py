"""The OpenAPI 3.1 document of the JSON API, served at /api/v1/openapi.json."""

from __future__ import annotations


def _err(description: str) -> dict:
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


def _ok(description: str, ref: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": {"$ref": ref}}}}


MAX_PAGE = 1_000_000  # keeps the row offset within the database's integers
MAX_PER_PAGE = 100
ID = {"type": "string", "pattern": "^[0-9a-f]{32}$"}
GEOMETRY = {"type": "object", "description": "GeoJSON geometry, WGS84 lon/lat (RFC 7946)",
            "required": ["type", "coordinates"],
            "properties": {"type": {"type": "string"}, "coordinates": {"type": "array"}}}

SCHEMAS = {
    "Error": {
        "type": "object", "required": ["error"],
        "properties": {"error": {"type": "object", "required": ["status", "message"], "properties": {
            "status": {"type": "integer"}, "message": {"type": "string"}}}},
    },
    "Plume": {
        "type": "object",
        "required": ["id", "source", "area_m2", "length_m", "pixels", "confidence", "geometry"],
        "properties": {
            "id": {"type": "integer", "description": "1 = the scene's largest plume"},
            "source": {"type": "object", "description": "the upwind end of the plume (the leak)",
                       "properties": {"lon": {"type": "number"}, "lat": {"type": "number"},
                                      "row": {"type": "number"}, "col": {"type": "number"}}},
            "area_m2": {"type": "number"}, "length_m": {"type": "number"}, "pixels": {"type": "integer"},
            "confidence": {"type": "object", "description": "model probability over the plume's pixels",
                           "properties": {"mean": {"type": "number"}, "max": {"type": "number"}}},
            "geometry": GEOMETRY,
        },
    },
    "File": {
        "type": "object", "required": ["url", "media_type", "bytes", "sha256"],
        "properties": {"url": {"type": "string", "format": "uri"}, "media_type": {"type": "string"},
                       "bytes": {"type": "integer"}, "sha256": {"type": "string"}},
    },
    "ResultSummary": {
        "type": "object",
        "required": ["id", "created_at", "input", "model", "plume_pixels", "plume_count", "timings", "links"],
        "properties": {
            "id": ID,
            "created_at": {"type": "string", "format": "date-time"},
            "input": {"type": "object", "properties": {
                "name": {"type": "string"}, "bytes": {"type": "integer"}, "sha256": {"type": "string"},
                "width": {"type": "integer"}, "height": {"type": "integer"},
                "crs": {"type": "string"},
                "bounds": {"type": "array", "items": {"type": "number"}, "minItems": 4, "maxItems": 4,
                           "description": "left, bottom, right, top in the scene's CRS"},
                "footprint": {"oneOf": [GEOMETRY, {"type": "null"}]}}},
            "model": {"type": "object", "properties": {
                "name": {"type": "string"}, "version": {"type": "string"}, "threshold": {"type": "number"},
                "mode": {"type": "string", "enum": ["multi-pass", "single-pass"]},
                "reference": {"type": ["string", "null"],
                              "description": "the reference pass the multi-pass model compared the scene with"}}},
            "plume_pixels": {"type": "integer"},
            "plume_count": {"type": "integer"},
            "max_probability": {"type": "number"},
            "timings": {"type": "object", "description": "seconds (upload_s, inference_s, plumes_s, outputs_s, "
                                                         "total_s) and the tile count",
                        "additionalProperties": {"type": "number"}},
            "links": {"type": "object", "additionalProperties": {"type": "string", "format": "uri"}},
        },
    },
    "Result": {
        "allOf": [{"$ref": "#/components/schemas/ResultSummary"}, {
            "type": "object", "required": ["plumes", "files"],
            "properties": {
                "plumes": {"type": "array", "items": {"$ref": "#/components/schemas/Plume"}},
                "files": {"type": "object", "description": "mask, prob (GeoTIFF), geojson, png (overlay), "
                                                           "preview_rgb, preview_swir",
                          "additionalProperties": {"$ref": "#/components/schemas/File"}},
                "cached": {"type": "boolean", "description": "answered from an identical earlier upload"},
            }}],
    },
    "ResultPage": {
        "type": "object", "required": ["page", "per_page", "total", "pages", "results"],
        "properties": {"page": {"type": "integer"}, "per_page": {"type": "integer"},
                       "total": {"type": "integer"}, "pages": {"type": "integer"},
                       "results": {"type": "array", "items": {"$ref": "#/components/schemas/ResultSummary"}},
                       "links": {"type": "object", "additionalProperties": {"type": "string"}}},
    },
    "Job": {
        "type": "object", "required": ["id", "status", "progress"],
        "properties": {
            "id": ID,
            "status": {"type": "string", "enum": ["queued", "running", "done", "failed"]},
            "stage": {"type": "string"},
            "progress": {"type": "number", "minimum": 0, "maximum": 1},
            "tiles_done": {"type": "integer"}, "tiles_total": {"type": "integer"},
            "input_name": {"type": "string"}, "width": {"type": "integer"}, "height": {"type": "integer"},
            "result_id": {"oneOf": [ID, {"type": "null"}]},
            "error": {"type": ["string", "null"]},
            "links": {"type": "object", "additionalProperties": {"type": "string"}},
        },
    },
}

UPLOAD_ERRORS = {
    "400": _err("no file, or more than one"),
    "413": _err("the file is larger than MAX_UPLOAD_MB"),
    "415": _err("not a GeoTIFF"),
    "422": _err("a GeoTIFF that breaks the input contract (bands, type, CRS, size)"),
    "502": _err("Triton answered with an error"),
    "503": _err("Triton, the model or the results database is unavailable: nothing was stored, try again"),
}

SECURITY_SCHEMES = {
    "ApiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key",
               "description": "the key the server was given in API_KEY"},
    "Bearer": {"type": "http", "scheme": "bearer", "description": "the same key as `Authorization: Bearer <key>`"},
}


def _require_key(doc: dict) -> None:
    """Declare the API key and require it on every JSON API operation (the document itself stays public)."""
    doc["components"]["securitySchemes"] = SECURITY_SCHEMES
    for path, item in doc["paths"].items():
        if not path.startswith("/api/v1/"):
            continue
        for operation in item.values():
            operation["security"] = [{"ApiKey": []}, {"Bearer": []}]
            operation["responses"]["401"] = _err("no valid API key (header X-API-Key)")


def _segment_path() -> dict:
    """POST /api/v1/segment: an upload answered at once, from the store, or as a job."""
    return {
        "/api/v1/segment": {"post": {
            "summary": "Segment one scene",
            "description": "Scenes up to SYNC_MAX_PIXELS (2048 x 2048) are answered at once (201); "
                           "larger ones become a background job (202, poll its Location). An upload "
                           "identical to an earlier one under the same model version is answered from "
                           "the stored result (200, cached: true).",
            "operationId": "segment",
            "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
                "type": "object", "required": ["file"],
                "properties": {
                    "file": {"type": "string", "format": "binary",
                             "description": "the scene: a GeoTIFF with B2 B3 B4 B8 B11 B12 (uint16 reflectance x "
                                            "10000), or 12 bands with a reference pass's B2_ref ... B12_ref after them"},
                    "reference": {"type": "string", "format": "binary",
                                  "description": "optional: a six-band GeoTIFF of the same place on another (clear) "
                                                 "date, warped onto the scene's grid; the multi-pass model compares "
                                                 "the scene with it"}}}}}},
            "responses": {
                "201": _ok("the new result", "#/components/schemas/Result"),
                "200": _ok("the stored result of an identical upload", "#/components/schemas/Result"),
                "202": _ok("a background job for a large scene", "#/components/schemas/Job"),
                **UPLOAD_ERRORS,
            },
        }}
    }


def _result_paths() -> dict:
    """The stored results (a page of them, one, its files) and the background jobs."""
    return {
        "/api/v1/results": {"get": {
            "summary": "Results, newest first",
            "operationId": "listResults",
            "parameters": [
                {"name": "page", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE, "default": 1}},
                {"name": "per_page", "in": "query",
                 "schema": {"type": "integer", "minimum": 1, "maximum": MAX_PER_PAGE, "default": 20}},
            ],
            "responses": {"200": _ok("one page of results", "#/components/schemas/ResultPage"),
                          "400": _err("bad paging parameters")},
        }},
        "/api/v1/results/{result_id}": {"get": {
            "summary": "One result with its plumes and files",
            "operationId": "getResult",
            "parameters": [{"name": "result_id", "in": "path", "required": True, "schema": ID}],
            "responses": {"200": _ok("the result", "#/components/schemas/Result"),
                          "404": _err("no such result")},
        }},
        "/api/v1/results/{result_id}/files/{kind}": {"get": {
            "summary": "A result's file",
            "operationId": "getResultFile",
            "parameters": [
                {"name": "result_id", "in": "path", "required": True, "schema": ID},
                {"name": "kind", "in": "path", "required": True, "schema": {
                    "type": "string", "enum": ["mask", "prob", "geojson", "png", "preview_rgb", "preview_swir"]}},
            ],
            "responses": {
                "200": {"description": "the file", "content": {
                    "image/tiff": {"schema": {"type": "string", "format": "binary"}},
                    "application/geo+json": {"schema": {"type": "object"}},
                    "image/png": {"schema": {"type": "string", "format": "binary"}}}},
                "404": _err("no such result or file"),
            },
        }},
        "/api/v1/jobs/{job_id}": {"get": {
            "summary": "A background job's progress",
            "operationId": "getJob",
            "parameters": [{"name": "job_id", "in": "path", "required": True, "schema": ID}],
            "responses": {"200": _ok("the job", "#/components/schemas/Job"), "404": _err("no such job")},
        }}
    }


def _service_paths() -> dict:
    """Liveness, readiness and Prometheus metrics (no API key on these)."""
    return {
        "/healthz": {"get": {"summary": "The process is up", "operationId": "healthz",
                             "responses": {"200": {"description": "up"}}}},
        "/readyz": {"get": {"summary": "Triton's model is ready and the database reachable",
                            "operationId": "readyz",
                            "responses": {"200": {"description": "ready"},
                                          "503": {"description": "not ready; the body says which check failed"}}}},
        "/metrics": {"get": {"summary": "Prometheus metrics", "operationId": "metrics",
                             "responses": {"200": {"description": "text exposition format",
                                                   "content": {"text/plain": {}}}}}}
    }


def openapi_document(api_key: bool = False) -> dict:
    """The document; with `api_key` (the server has API_KEY set) the JSON API's operations require it."""
    doc = {
        "openapi": "3.1.0",
        "info": {
            "title": "methane-seg API",
            "version": "1.0.0",
            "description": "Find methane plumes in Sentinel-2 L1C scenes: upload one 6-band GeoTIFF "
                           "(B2, B3, B4, B8, B11, B12, uint16 reflectance x 10000, projected CRS).",
        },
        "paths": {**_segment_path(), **_result_paths(), **_service_paths()},
        "components": {"schemas": SCHEMAS},
    }
    if api_key:
        _require_key(doc)
    return doc
