"""Prometheus metrics of the web app, served at /metrics.

  methane_seg_http_requests_total{endpoint,method,status}
  methane_seg_http_request_duration_seconds{endpoint,method,status}   histogram
  methane_seg_inference_duration_seconds{mode}                         histogram (segmentation only)
  methane_seg_result_duration_seconds{mode}                            histogram (upload to stored result)
  methane_seg_jobs_in_flight                                           gauge (queued + running)
  methane_seg_jobs_total{status}                                       counter
  methane_seg_plumes_found_total                                       counter
  methane_seg_results_total{outcome}                                   counter (computed | cached)

`endpoint` is the route's rule (e.g. /api/v1/results/<result_id>), never the raw
path, so ids do not multiply the series. Triton's own metrics (nv_inference_*) stay on Triton's
metrics port (8002), which Prometheus scrapes itself (deploy/prometheus.yml): this endpoint never
repeats them, so every inference is counted once.
"""

from __future__ import annotations

import time

from flask import Flask, Response, g, request
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

disable_created_metrics()  # no *_created series: they only double the output

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 80, 160, 320)


class Metrics:
    def __init__(self):
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("methane_seg_http_requests", "HTTP requests by endpoint, method and status",
                                ["endpoint", "method", "status"], registry=r)
        self.latency = Histogram("methane_seg_http_request_duration_seconds", "HTTP request latency",
                                 ["endpoint", "method", "status"], buckets=LATENCY_BUCKETS, registry=r)
        self.inference = Histogram("methane_seg_inference_duration_seconds",
                                   "Segmentation time of a scene on Triton (tiles sent and blended)",
                                   ["mode"], buckets=LATENCY_BUCKETS, registry=r)
        self.result_time = Histogram("methane_seg_result_duration_seconds",
                                     "Upload to stored result: inference, plumes, files, database",
                                     ["mode"], buckets=LATENCY_BUCKETS, registry=r)
        self.jobs_in_flight = Gauge("methane_seg_jobs_in_flight", "Background jobs queued or running", registry=r)
        self.jobs = Counter("methane_seg_jobs", "Background jobs finished, by status", ["status"], registry=r)
        self.plumes = Counter("methane_seg_plumes_found", "Plumes found in newly segmented scenes", registry=r)
        self.results = Counter("methane_seg_results", "Results answered, computed or from the store",
                               ["outcome"], registry=r)

    def init_app(self, app: Flask) -> None:
        @app.before_request
        def _start():
            g._metrics_t0 = time.perf_counter()

        @app.after_request
        def _observe(response):
            t0 = g.pop("_metrics_t0", None)
            if t0 is not None:
                endpoint = request.url_rule.rule if request.url_rule is not None else "(unmatched)"
                labels = (endpoint, request.method, str(response.status_code))
                self.requests.labels(*labels).inc()
                self.latency.labels(*labels).observe(time.perf_counter() - t0)
            return response

        @app.get("/metrics")
        def metrics():
            return Response(generate_latest(self.registry), mimetype=CONTENT_TYPE_LATEST.split(";")[0],
                            headers={"Content-Type": CONTENT_TYPE_LATEST})
