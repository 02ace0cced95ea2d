"""`methane-seg segment`: segment scenes on a Triton server and write georeferenced outputs.

    methane-seg segment SCENE.tif --out DIR [--url localhost:8000] [--protocol http|grpc]

Exit codes (core/exit_codes.py): 0 success, 2 bad input or usage, 3 server unreachable or model
not ready, 4 inference failed on the server.
"""

from __future__ import annotations

import argparse
import math
import os
import sys

from core.exit_codes import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_UNAVAILABLE


def _number(kind, low=None, high=None, what="a number"):
    """An argparse type: a finite `kind` within [low, high] (a usage error, exit 2, otherwise)."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if not math.isfinite(value) or (low is not None and value < low) or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}")
        return value
    return parse


WIND_MAX_MS = 50.0  # above this no plume stays on the ground for a satellite to see


def segment_parser() -> argparse.ArgumentParser:
    from client.shm import MODES as SHM_MODES

    p = argparse.ArgumentParser(
        prog="methane-seg segment",
        description="Segment methane plumes in a Sentinel-2 L1C GeoTIFF (bands B2 B3 B4 B8 B11 B12, "
        "uint16 reflectance x 10000; or 12 bands, a reference pass's B2_ref ... B12_ref after them) with the "
        "model served by Triton.",
    )
    p.add_argument("scenes", nargs="+", metavar="SCENE", help="input GeoTIFF(s)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--reference", metavar="REF",
                   help="a six-band GeoTIFF of the same place on another (clear) date, for the multi-pass model; "
                        "warped onto SCENE's grid when it lies on another (one SCENE only)")
    p.add_argument("--url", default=os.environ.get("TRITON_URL"),
                   help="Triton host:port (default localhost:8000 for http, localhost:8001 for grpc; env TRITON_URL)")
    p.add_argument("--protocol", choices=["http", "grpc"], default=os.environ.get("TRITON_PROTOCOL", "http"))
    p.add_argument("--model", default=os.environ.get("TRITON_MODEL", "auto"),
                   help="model name on the server; 'auto' (default): the multi-pass model for a scene with a "
                        "reference pass when the server has it, else the single-pass one (env TRITON_MODEL)")
    p.add_argument("--batch-size", type=_number(int, 1, 256, "a whole number of tiles from 1 to 256"), default=8,
                   help="tiles per request (default 8)")
    p.add_argument("--concurrency", type=_number(int, 1, 64, "a whole number from 1 to 64"), default=2,
                   help="requests in flight (default 2)")
    p.add_argument("--timeout", type=_number(float, 0.1, None, "a number of seconds, at least 0.1"), default=60.0,
                   help="seconds per request (default 60)")
    p.add_argument("--shared-memory", choices=SHM_MODES,
                   default=os.environ.get("TRITON_SHARED_MEMORY", "auto"),
                   help="tiles through system shared memory: auto (when Triton is on this host and accepts it), "
                        "system (required), none (always the socket); env TRITON_SHARED_MEMORY")
    p.add_argument("--source-margin", type=_source_margin, default=os.environ.get("SOURCE_MARGIN_PX", "32"),
                   help="pixels around plume pixels where the source heat map is computed (default 32, which "
                        "covers every peak the source step reads); 'all': on every tile; env SOURCE_MARGIN_PX")
    p.add_argument("--source-views", type=_source_views, default=os.environ.get("SOURCE_VIEWS", "2"),
                   help="views of each heat-map tile whose maps are averaged: 1, 2 (and turned 180 degrees; "
                        "default: more sources within 2 px) or 4 (and flipped both ways); env SOURCE_VIEWS")
    p.add_argument("--max-size-mb", type=_number(float, 0.001, None, "a positive number of MB"),
                   default=os.environ.get("MAX_UPLOAD_MB") or "512",
                   help="refuse input files larger than this (default 512; env MAX_UPLOAD_MB, as the web app)")
    p.add_argument("--wind-speed", type=_number(float, 0.1, WIND_MAX_MS, f"a wind speed from 0.1 to {WIND_MAX_MS:g} m/s"),
                   help="10 m wind speed (m/s): adds an IME emission-rate estimate")
    p.add_argument("--wind-to", type=_number(float, -360, 360, "a direction in degrees from -360 to 360"),
                   help="direction the wind blows to (degrees clockwise from north): fixes the upwind end")
    p.add_argument("--every-piece", action="store_true",
                   help="report every piece of the mask as a plume with its own source point: downwind puffs "
                        "not joined to their plume, small pieces without a source not dropped")
    return p


def _source_margin(text: str) -> int | None:
    if str(text).strip().lower() == "all":
        return None
    return _number(int, 0, 100000, "a whole number of pixels from 0, or 'all'")(text)


def _source_views(text: str) -> int:
    from core.tiling import VIEW_COUNTS

    n = _number(int, 1, 4, "1, 2 or 4")(text)
    if n not in VIEW_COUNTS:
        raise argparse.ArgumentTypeError(f"must be 1, 2 or 4, not {text!r}")
    return n


def segment_main(argv: list[str]) -> int:
    args = segment_parser().parse_args(argv)
    from client.segmenter import Segmenter
    from client.shm import MODES as SHM_MODES

    if args.shared_memory not in SHM_MODES:  # from TRITON_SHARED_MEMORY
        return _fail(f"TRITON_SHARED_MEMORY must be {', '.join(SHM_MODES[:-1])} or {SHM_MODES[-1]}, "
                     f"not {args.shared_memory!r}", EXIT_BAD_INPUT)

    if args.reference and len(args.scenes) > 1:
        return _fail("--reference goes with one SCENE (each scene has its own reference pass)", EXIT_BAD_INPUT)
    segmenter = Segmenter(args.url, args.protocol, model_name=args.model, batch_size=args.batch_size,
                          concurrency=args.concurrency, timeout=args.timeout, shared_memory=args.shared_memory,
                          source_margin=args.source_margin, source_views=args.source_views)
    worst = 0
    for scene in args.scenes:
        code = _segment_one(segmenter, scene, args, quiet=len(args.scenes) > 1)
        if code == EXIT_UNAVAILABLE:
            return code
        worst = max(worst, code)
    return worst


def _segment_one(segmenter, scene: str, args, quiet: bool) -> int:
    from core.contract import ContractError, validate_file_size
    from core.outputs import write_outputs
    from client.segmenter import InferenceFailed, TritonUnavailable

    try:
        for path in (scene, args.reference):
            if path and os.path.isfile(path):
                validate_file_size(path, args.max_size_mb)
        result = segmenter.segment(scene, progress=sys.stderr.isatty(), reference=args.reference)
        try:
            paths, plumes = write_outputs(result, args.out, wind_to_deg=args.wind_to, wind_ms=args.wind_speed,
                                          every_piece=args.every_piece)
        finally:
            result.scene.close()
    except ContractError as exc:
        return _fail(f"bad input: {exc}", EXIT_BAD_INPUT)
    except TritonUnavailable as exc:
        return _fail(str(exc), EXIT_UNAVAILABLE)
    except InferenceFailed as exc:
        return _fail(str(exc), EXIT_FAILED)
    except OSError as exc:
        return _fail(f"cannot write outputs: {exc}", EXIT_BAD_INPUT)
    passes = (f"target + reference, {result.reference}" if result.reference
              else "one pass" + (": the target alone, no multi-pass model served" if result.scene.has_reference else ""))
    heat = (f"{result.timings['source_tiles']} for the source heat map in {result.timings['source_views']} view(s), "
            if result.timings["source_views"] else "")
    print(f"{result.scene.name}: {result.plume_pixels} plume pixels, {len(plumes)} plume(s) "
          f"(model {result.model_name} v{result.model_version}, {passes}; {result.timings['tiles']} tiles, {heat}"
          f"{result.timings['inference_s']:.2f} s)")
    if not quiet:
        for pl in plumes:
            rate = ""
            if pl.emission:
                rate = f", Q {pl.emission['q_kg_h']:.0f} ± {pl.emission['q_sigma_kg_h']:.0f} kg/h (IME)"
            print(f"  plume {pl.id}: {pl.pixels} px, {pl.area_m2 / 1e4:.1f} ha, max p {pl.max_probability:.2f}, "
                  f"source lon {pl.source_lon:.5f} lat {pl.source_lat:.5f}{rate}")
        for path in paths.values():
            print(f"  {path}")
    return 0


def _fail(message: str, code: int) -> int:
    print(f"methane-seg: error: {message}", file=sys.stderr)
    return code


