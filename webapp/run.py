"""`make run`: start the real Triton server on the model repository, then the upload page.

    methane-seg serve [--model-repository model_repository] [--host 127.0.0.1] [--port 5000]
                      [--http-port 8000] [--grpc-port 8001] [--metrics-port 8002]

Every flag also reads an environment variable (MODEL_REPOSITORY, HOST, PORT,
TRITON_HTTP_PORT, TRITON_GRPC_PORT, TRITON_METRICS_PORT). The web app's own settings
(DATA_DIR, DATABASE_URL, ...) are in webapp/config.py; its database is migrated at
start-up. Ctrl-C (or SIGTERM) stops the web app and then Triton.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys

from serving.tritonserver import ServerError, TritonServer


def parse_args(argv):
    env = os.environ.get
    p = argparse.ArgumentParser(prog="methane-seg serve", description=__doc__.split("\n\n")[0])
    p.add_argument("--model-repository", default=env("MODEL_REPOSITORY", "model_repository"))
    p.add_argument("--host", default=env("HOST", "127.0.0.1"), help="address of the upload page")
    p.add_argument("--port", type=int, default=int(env("PORT", "5000")), help="port of the upload page")
    p.add_argument("--http-port", type=int, default=int(env("TRITON_HTTP_PORT", "8000")))
    p.add_argument("--grpc-port", type=int, default=int(env("TRITON_GRPC_PORT", "8001")))
    p.add_argument("--metrics-port", type=int, default=int(env("TRITON_METRICS_PORT", "8002")))
    p.add_argument("--threads", type=int, default=int(env("WEB_THREADS", "4")), help="web server threads")
    return p.parse_args(argv)


def _terminate(signum, frame):
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    from waitress import serve

    from webapp.app import create_app

    signal.signal(signal.SIGTERM, _terminate)
    # A shell starts background jobs with SIGINT ignored, and Python then keeps it ignored:
    # restore Ctrl-C / `kill -INT` so that they always stop both servers.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    server = TritonServer(args.model_repository, http_port=args.http_port, grpc_port=args.grpc_port,
                          metrics_port=args.metrics_port, host="127.0.0.1")
    print(f"starting Triton on {args.model_repository} (http {args.http_port}, grpc {args.grpc_port}, "
          f"metrics {args.metrics_port}); log: {server.log_path}", flush=True)
    try:
        server.start()
    except ServerError as exc:
        print(f"methane-seg: error: {exc}", file=sys.stderr)
        server.cleanup()
        return 3
    try:
        app = create_app({"TRITON_URL": server.http_url, "TRITON_PROTOCOL": "http"})
        print(f"Triton ready. Upload page: http://{args.host}:{args.port}/  (Ctrl-C stops both)", flush=True)
        serve(app, host=args.host, port=args.port, threads=args.threads, _quiet=True)
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        print(f"methane-seg: error: cannot serve on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 3
    except ValueError as exc:  # a setting from the environment (webapp/config.py) that cannot be read
        print(f"methane-seg: error: {exc}", file=sys.stderr)
        return 2
    finally:
        print("stopping Triton ...", flush=True)
        server.cleanup()
    print("stopped.", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
