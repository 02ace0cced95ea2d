"""Assemble the benchmark figures into RESULTS.md, a PNG plot and one raw JSON.

    python perf/report.py --work DIR [--out perf] [--title ...]

Reads the JSON files the benchmarks wrote into DIR (models.json, int8.json, triton.json, peer.json,
client.json, upload.json; a missing one is reported as not measured), computes the ratios the
targets of issue #8 name, with PASS/MISS each, and writes OUT/RESULTS.md, OUT/results.png and
OUT/results.json. Nothing is measured here.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

PARTS = ("models", "int8", "triton", "triton-local", "peer", "client", "upload")
CLIENT_VARIANTS = ("client-2x1-fp32", "client-2x1-int8", "client-socket", "client-source-all", "client-one-view",
                   "client-four-views")  # the 5490 scene, served or sent otherwise


def _transport(p: dict) -> str:
    return "shm" if p.get("shared_memory", "none") == "system" else "socket"


def load(work: Path) -> dict:
    data = {}
    for part in PARTS:
        f = work / f"{part}.json"
        if f.exists():
            data[part] = json.loads(f.read_text())
    for part in CLIENT_VARIANTS:
        f = work / f"{part}.json"
        if f.exists():
            data.setdefault("client_variants", []).append(json.loads(f.read_text()))
    local = data.pop("triton-local", None)
    if local:  # batch 8 and shared memory on the shipped layouts: the same targets, one more table
        data["triton_local"] = local
        if "triton" in data:
            data["triton"] = {**data["triton"], "points": data["triton"]["points"] + local["points"]}
        else:
            data["triton"] = local
    errors = work / "errors.json"
    data["errors"] = json.loads(errors.read_text()) if errors.exists() else {}
    return data


def target(name, measured, goal, ok, unit="", detail="", reason=""):
    return {"target": name, "measured": measured, "goal": goal, "status": ("PASS" if ok else "MISS") if ok is not None
            else "NOT MEASURED", "unit": unit, "detail": detail, "reason": reason}


def _fmt(v, nd=2):
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.{nd}f}"
    return str(v)


# -- the targets ---------------------------------------------------------------------------------
def triton_summary(tr: dict) -> dict:
    """Per (config, protocol, tiles per request, transport): median ratio to in-process (at the same batch)
    at >= 4 in flight, and latency over in-process at 1."""
    by = {}
    for p in tr["points"]:
        by.setdefault((p["config"], p["protocol"], p.get("batch", 1), _transport(p)), []).append(p)
    out = {}
    for (cfg, proto, batch, transport), pts in by.items():
        loaded = [p["ratio_to_inprocess"] for p in pts if p["concurrency"] >= 4]
        one = [p for p in pts if p["concurrency"] == 1]
        out[f"{cfg}|{proto}|b{batch}|{transport}"] = {
            "config": cfg, "protocol": proto, "batch": batch, "transport": transport,
            "label": f"{cfg} over {proto}, {batch} tile{'s' if batch > 1 else ''}/request, {transport}",
            "ratio_at_4plus": round(statistics.median(loaded), 3) if loaded else None,
            "min_ratio_at_4plus": round(min(loaded), 3) if loaded else None,
            "latency_over_inprocess_ms": one[0]["latency_over_inprocess_ms"] if one else None,
            "p50_at_1_ms": round(one[0]["p50_ms"], 1) if one else None,
            "tiles_per_s_at_1": round(one[0]["infer_per_s"], 1) if one else None,
        }
    return out


def dyn_effect(tr: dict) -> list[dict]:
    """Dynamic batching on vs off, same layout, dtype, protocol and concurrency."""
    idx = {(p["layout"], p["dtype"], p["protocol"], p["concurrency"], p["dynamic"]): p for p in tr["points"]
           if p.get("batch", 1) == 1 and _transport(p) == "socket"}
    rows = []
    for (layout, dtype, proto, c, dyn), p in sorted(idx.items()):
        if dyn:
            off = idx.get((layout, dtype, proto, c, False))
            if off:
                rows.append({"layout": layout, "dtype": dtype, "protocol": proto, "concurrency": c,
                             "on": round(p["infer_per_s"], 1), "off": round(off["infer_per_s"], 1),
                             "gain": round(p["infer_per_s"] / off["infer_per_s"], 3)})
    return rows


def _model_targets(d: dict) -> list[dict]:
    """(a): the model's GFLOP/s against the machine's FP32 peak, and why it falls short."""
    m = d.get("models")
    if not (m and "onnxruntime-fp32" in m["best"]):
        return [target("model GFLOP/s / FP32 peak (onnxruntime)", None, 0.75, None)]
    b = m["best"]["onnxruntime-fp32"]
    split = m.get("time_split", {})
    detail = (f"{b['gflops_best']} GFLOP/s ({b['layout']}, batch {b['batch']}, {m['flops']['conv_gflop']:.2f} "
              f"GFLOP/tile) vs peak {m['peak']['gflops']} GFLOP/s")
    if "onnxruntime-int8" in m["best"]:
        detail += f"; the served INT8 file: {m['best']['onnxruntime-int8']['fraction_of_peak']:.2f} of the FP32 peak"
    reason = ""
    if b["fraction_of_peak"] < 0.75:
        fp = split.get("fp32")
        reason = ("onnxruntime's convolutions reach less of the peak than a large matrix product (small "
                  "channel counts, memory-bound layers)" if not fp or "net_fraction_of_peak" not in fp else
                  f"the input features computed in the graph before the U-Net (log-ratio, its anomaly, the "
                  f"Huber-reweighted B12 regression, Gaussian blurs) are element-wise and memory-bound: "
                  f"{100 * fp['features_share']:.0f} % of a tile's time (onnxruntime profile, 1 thread) for "
                  f"{100 * (1 - m['flops']['net_conv_gflop'] / m['flops']['conv_gflop']):.1f} % of its FLOPs, "
                  f"layout reorders {100 * fp['reorder_share']:.0f} %; the U-Net's layers alone run at "
                  f"{fp['net_fraction_of_peak']:.2f} of the peak")
    return [target("model GFLOP/s / FP32 peak (onnxruntime)", b["fraction_of_peak"], 0.75,
                   b["fraction_of_peak"] >= 0.75, "x", detail, reason)]


def _triton_targets(d: dict, extra: dict) -> list[dict]:
    """(b): Triton's throughput against in-process onnxruntime at >= 4 in flight, and its latency
    over in-process at 1; the winners and dynamic batching's effect go into `extra`."""
    tr = d.get("triton")
    if not (tr and tr.get("points")):
        return [target("Triton / in-process onnxruntime at >= 4 in flight", None, 0.95, None),
                target("Triton latency over in-process at 1 in flight", None, 5.0, None, "ms")]
    t = []
    s = triton_summary(tr)
    extra["triton_summary"] = s
    extra["dynamic_batching"] = dyn_effect(tr)
    loaded = [v for v in s.values() if v["ratio_at_4plus"] is not None]
    if loaded:
        best = max(loaded, key=lambda v: v["ratio_at_4plus"])
        ok = best["ratio_at_4plus"] >= 0.95
        plain = [v for v in loaded if v["batch"] == 1 and v["transport"] == "socket"]
        plain_best = max(plain, key=lambda v: v["ratio_at_4plus"]) if plain else None
        t.append(target("Triton / in-process onnxruntime at >= 4 in flight", best["ratio_at_4plus"], 0.95, ok, "x",
                        f"best: {best['label']} (median over levels >= 4; lowest {best['min_ratio_at_4plus']})"
                        + (f"; one tile per request over a socket: {plain_best['ratio_at_4plus']} "
                           f"({plain_best['label']})" if plain_best and plain_best is not best else ""),
                        "" if ok else "the server's per-request cost (Python backend, (de)serialisation, "
                        "the client sharing the 2 cores) is not hidden behind the model's compute"))
        extra["winner_throughput"] = best
    else:
        t.append(target("Triton / in-process onnxruntime at >= 4 in flight", None, 0.95, None))
    ones = [v for v in s.values() if v["latency_over_inprocess_ms"] is not None and v["batch"] == 1]
    if ones:
        best1 = min(ones, key=lambda v: v["latency_over_inprocess_ms"])
        ok = best1["latency_over_inprocess_ms"] <= 5.0
        t.append(target("Triton latency over in-process at 1 in flight", best1["latency_over_inprocess_ms"], 5.0, ok,
                        "ms", f"best: {best1['label']}: p50 {best1['p50_at_1_ms']} ms against the best "
                        "in-process p50 (1 session x 2 or x 1 thread, one call at a time)",
                        "" if ok else "per-request overhead of the Python backend and the transport"))
        extra["winner_latency"] = best1
    return t


def _peer_targets(d: dict, extra: dict) -> list[dict]:
    """(c): Triton's tiles/s over the plain web server's at >= 4 in flight (the ratios into `extra`)."""
    pe = d.get("peer")
    if not pe:
        return [target("Triton / peer (plain web server) at >= 4 in flight", None, 1.0, None)]
    rows = pe["table"]
    peer = {r["in_flight"]: r["tiles_per_s"] for r in rows if r["target"] == "peer"}
    tritons = sorted({r["target"] for r in rows if r["target"].startswith("triton")})
    ratios = {}
    for name in tritons:
        mine = {r["in_flight"]: r["tiles_per_s"] for r in rows if r["target"] == name}
        ratios[name] = {c: round(mine[c] / peer[c], 3) for c in mine if c in peer and peer[c]}
    extra["triton_vs_peer"] = ratios
    loaded = {n: statistics.median([v for c, v in r.items() if c >= 4]) for n, r in ratios.items()
              if any(c >= 4 for c in r)}
    if not loaded:
        return []
    name = max(loaded, key=loaded.get)
    ok = loaded[name] > 1.0
    return [target("Triton / peer (plain web server) at >= 4 in flight", round(loaded[name], 3), 1.0, ok, "x",
                   f"{name}; shipped config: {_fmt(loaded.get('triton-shipped'), 3)}",
                   "" if ok else "on 2 cores both are bounded by the model; the peer has no queue or "
                   "extra process hop")]


def _int8_targets(d: dict, extra: dict) -> list[dict]:
    """INT8's speed-up over FP32 and its plume IoU against FP32's (the decision into `extra`)."""
    i8 = d.get("int8")
    if not i8:
        return [target("INT8 speed-up over FP32 (onnxruntime)", None, 1.4, None),
                target("INT8 plume IoU - FP32 plume IoU", None, 0.01, None)]
    m = d.get("models")
    sp = i8["speed"]["speedup"]
    m_int8 = (m or {}).get("best", {}).get("onnxruntime-int8")
    m_fp32 = (m or {}).get("best", {}).get("onnxruntime-fp32")
    side = round(m_int8["tiles_per_s"] / m_fp32["tiles_per_s"], 3) if m_int8 and m_fp32 else None
    q = i8["quality"]
    extra["int8_decision"] = {"serve": i8["serve"], "reason": i8["reason"]}
    return [target("INT8 speed-up over FP32 (onnxruntime)", sp, 1.4, sp >= 1.4, "x",
                   f"batch {i8['speed']['batch']}, best layout of each, alternating; per layout: "
                   + ", ".join(f"{k} {v['speedup']}" for k, v in i8["speed"].get("per_layout", {}).items())
                   + f"; best-vs-best in (a): {_fmt(side, 3)}",
                   "" if sp >= 1.4 else "measured below the bar: the layers left in FP32 (feature extraction, "
                   "head) and the quantise/dequantise steps between the INT8 convolutions take their share"),
            target("INT8 plume IoU - FP32 plume IoU", round(q["iou_delta"], 4), 0.01, q["iou_delta"] <= 0.01, "",
                   f"{q['scenes']} test scenes, threshold {q['threshold']}: FP32 {q['iou_fp32']:.4f}, "
                   f"INT8 {q['iou_int8']:.4f}; INT8 mask vs FP32 mask IoU {q['mask_iou_int8_vs_fp32']:.3f}",
                   "" if q["iou_delta"] <= 0.01 else "quantisation moves pixels across the threshold")]


def _upload_targets(d: dict) -> list[dict]:
    """(e): p95 of one upload at a time through the web app, and the slowest upload of the largest
    scene it answers in the request."""
    up = d.get("upload")
    one = next((r for r in (up or {}).get("runs", []) if r["users"] == 1), None)
    if not (one and one["p95_s"] is not None):
        return [target("p95 of one 1024x1024 upload through Flask", None, 2.0, None, "s")] + _largest_upload_target(up)
    ok = one["p95_s"] <= 2.0 and one["errors"] == 0
    return [target(f"p95 of one {one['size']}x{one['size']} upload through Flask", one["p95_s"], 2.0, ok, "s",
                   f"{one['requests']} uploads, 1 user, {one['errors']} errors",
                   "" if ok else "tiling, inference of the tiles and the result's files (previews, GeoTIFFs) "
                   "add up above the bar")] + _largest_upload_target(up)


def _largest_upload_target(up: dict | None) -> list[dict]:
    """(e): every upload of the largest scene answered in the request (2048 x 2048), one at a time,
    within its 10 s: the slowest of them."""
    big = (up or {}).get("largest")
    goal = (up or {}).get("target_largest_s", 10.0)
    if not (big and big.get("max_s") is not None):
        return [target("slowest 2048x2048 upload through Flask", None, goal, None, "s")]
    ok = big["max_s"] <= goal and big["errors"] == 0 and big["answered_in_request"]
    if not big["answered_in_request"]:
        reason = "not every upload was answered in the request (201): SYNC_MAX_PIXELS is below the size"
    elif big["errors"]:
        reason = f"{big['errors']} uploads failed"
    else:
        reason = "" if ok else ("tiling, inference of the tiles and the result's files (previews, GeoTIFFs) add "
                                "up above the bar")
    return [target(f"slowest {big['size']}x{big['size']} upload through Flask", big["max_s"], goal, ok, "s",
                   f"{big['requests']} uploads one at a time (1 user), answers "
                   + ", ".join(f"{n} x HTTP {k}" for k, n in sorted(big["statuses"].items())) + f", p50 "
                   f"{_fmt(big['p50_s'])} s, p95 {_fmt(big['p95_s'])} s, {big['errors']} errors", reason)]


def _client_targets(d: dict) -> list[dict]:
    """(d): the whole scene through the client against its time, and the client's peak memory."""
    cl = d.get("client")
    if not cl:
        return [target("5490x5490 scene through the client", None, 20, None, "s")]
    ok = cl["seconds"] <= cl["target_seconds"]
    variants = "".join(f"; served {v['variant']} with {v['onnx']} over {v.get('transport', 'socket')}: "
                       f"{v['seconds']} s ({v['size']} px)"
                       for v in d.get("client_variants", []))
    return [target(f"{cl['size']}x{cl['size']} scene through the client", cl["seconds"], cl["target_seconds"], ok,
                   "s", f"{cl['tiles']} tiles ({cl.get('source_tiles')} again for the heat map, "
                   f"{cl.get('source_views')} views each), "
                   f"{cl['tiles_per_s']} tiles/s, {cl['protocol']}, batch "
                   f"{cl['batch_size']}, {cl['concurrency']} in flight, Triton as shipped{variants}",
                   "" if ok else f"{cl['tiles']} tiles at the model's speed take longer than the bar: fewer "
                   "FLOPs per tile, larger tiles or less overlap are needed"),
            target("client peak RSS", cl["peak_rss_mb"], cl["target_rss_mb"], cl["peak_rss_mb"] <= cl["target_rss_mb"],
                   "MB")]


def compute_targets(d: dict) -> tuple[list[dict], dict]:
    """The target rows, in the order of the issue, and what was derived on the way (winners,
    dynamic batching, ratios to the peer, the INT8 decision)."""
    extra = {}
    t = (_model_targets(d) + _triton_targets(d, extra) + _peer_targets(d, extra) + _int8_targets(d, extra)
         + _upload_targets(d) + _client_targets(d))
    return t, extra


# -- the PNG ---------------------------------------------------------------------------------------
def plot(d: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(12, 9))
    ax = axes[0, 0]
    m = d.get("models")
    if m:
        series = {}
        for r in m["rows"]:
            series.setdefault(f"{r['engine']} {r['layout']}", []).append((r["batch"], r["tiles_per_s"]))
        for name, pts in sorted(series.items()):
            pts.sort()
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=name)
        ax.set_xscale("log", base=2)
        ax.set_title(f"(a) in-process, {m['tile']}px tiles ({m['flops']['conv_gflop']:.2f} GFLOP/tile)")
        ax.set_xlabel("batch")
        ax.set_ylabel("tiles/s")
        ax.legend(fontsize=7)
    ax = axes[0, 1]
    tr = d.get("triton")
    if tr:
        series = {}
        for p in tr["points"]:
            if p.get("batch", 1) == 1:
                name = f"{p['config']} {p['protocol']}" + (" shm" if _transport(p) == "shm" else "")
                series.setdefault(name, []).append((p["concurrency"], p["infer_per_s"]))
        for name, pts in sorted(series.items()):
            pts.sort()
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=".", label=name, lw=1)
        base = statistics.median(b["best_tiles_per_s"] for b in tr["baselines"] if b.get("batch", 1) == 1)
        ax.axhline(base, color="k", ls="--", label=f"in-process onnxruntime ({base:.1f})")
        ax.axhline(0.95 * base, color="grey", ls=":", label="0.95x in-process")
        ax.set_xscale("log", base=2)
        ax.set_title("(b) Triton under perf_analyzer")
        ax.set_xlabel("requests in flight")
        ax.set_ylabel("tiles/s")
        ax.legend(fontsize=6, ncol=2)
    ax = axes[1, 0]
    pe = d.get("peer")
    if pe:
        series = {}
        for r in pe["table"]:
            series.setdefault(r["target"], []).append((r["in_flight"], r["tiles_per_s"]))
        for name, pts in sorted(series.items()):
            pts.sort()
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=name)
        ax.set_title("(c) Triton vs a plain web server (same client)")
        ax.set_xlabel("requests in flight")
        ax.set_ylabel("tiles/s")
        ax.legend(fontsize=7)
    ax = axes[1, 1]
    targets, _ = compute_targets(d)
    names, vals, colors = [], [], []
    for t in targets:
        if t["measured"] is None:
            continue
        lower_is_better = t["unit"] in ("ms", "s", "MB") or "IoU" in t["target"]
        score = (t["goal"] / t["measured"] if t["measured"] > 0 else 3.0) if lower_is_better else (
            t["measured"] / t["goal"])
        names.append(t["target"][:48])
        vals.append(min(score, 3.0))
        colors.append("tab:green" if t["status"] == "PASS" else "tab:red")
    ax.barh(range(len(vals)), vals, color=colors)
    ax.axvline(1.0, color="k", lw=1)
    ax.set_yticks(range(len(vals)), names, fontsize=7)
    ax.set_xlabel("measured / target (>= 1 meets it; capped at 3)")
    ax.set_title("targets")
    ax.invert_yaxis()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# -- RESULTS.md ----------------------------------------------------------------------------------
def cost_budget(d: dict, scene: int = 5490, seconds: float = 20.0, overlap: int = 32) -> dict | None:
    """What the 5490x5490-in-20-s target allows the model per tile, at the throughput measured in (a)."""
    import sys

    m = d.get("models")
    if not m or "onnxruntime-fp32" not in m["best"]:
        return None
    root = Path(__file__).resolve().parent.parent
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    from core.tiling import tile_grid

    out = {"scene": scene, "seconds": seconds, "rows": []}
    gflops = m["best"]["onnxruntime-fp32"]["gflops"]  # median rounds, best layout/batch
    for tile in (256, 512):
        n = len(tile_grid(scene, scene, tile, min(overlap, tile // 4)))
        need = n / seconds
        out["rows"].append({"tile": tile, "overlap": min(overlap, tile // 4), "tiles": n, "tiles_per_s_needed": round(need, 1),
                            "max_gflop_per_tile_at_measured_rate": round(gflops / need, 2),
                            "served_model_gflop_per_tile": round(m["flops"]["conv_gflop"] * (tile / m["tile"]) ** 2, 2)})
    out["measured_gflops"] = gflops
    try:
        meta = json.loads((root / "model_repository/methane_seg/1/metadata.json").read_text())
        out["served_val_iou"] = meta.get("val_metrics", {}).get("iou")
        out["served_architecture"] = f"{meta.get('architecture')} {meta.get('encoder')}"
    except OSError:
        pass
    return out


def _md_header(d: dict, title: str) -> list[str]:
    """The title, the conditions of the run and the parts that failed."""
    cond = next((d[p]["conditions"] for p in PARTS if p in d and "conditions" in d[p]), {})
    L = [f"# {title}", ""]
    L += [f"Measured {cond.get('date_utc', '?')} on {cond.get('cpu', '?')}, {cond.get('cores', '?')} cores "
          f"(load average at start {cond.get('load_average_1m_at_start', '?')}), Python {cond.get('python', '?')}, "
          f"onnxruntime {cond.get('onnxruntime', '?')}; model `{cond.get('model_file', '?')}` "
          f"sha256 `{cond.get('model_sha256', '?')[:16]}`. Written by `perf/report.py` from the JSON of each "
          "benchmark (raw figures: `results.json`). Ratios compare figures measured in the same run, next to each "
          "other; these machines drift by about +-10 %.", ""]
    if d.get("errors"):
        L += ["**Parts that failed to run:** " + "; ".join(f"{k}: {v}" for k, v in d["errors"].items()), ""]
    return L


def _md_targets(targets: list[dict], png_name: str) -> list[str]:
    """The targets table and the plot."""
    L = ["## Targets", "", "| target | measured | goal | status | detail / reason for a miss |", "|---|---|---|---|---|"]
    for t in targets:
        op = "≤" if t["unit"] in ("ms", "s", "MB") or "IoU" in t["target"] else "≥"
        if "peer" in t["target"]:
            op = ">"
        why = "; ".join(x for x in (t["detail"], t["reason"] and f"**why:** {t['reason']}") if x)
        L.append(f"| {t['target']} | {_fmt(t['measured'], 3)} {t['unit']} | {op} {t['goal']} {t['unit']} | "
                 f"{t['status']} | {why} |")
    L += ["", f"![results]({png_name})", ""]
    return L


def _md_ship(extra: dict) -> list[str]:
    """The configuration to ship: the winners for throughput and latency, dynamic batching's effect."""
    L = []
    if extra.get("winner_throughput") or extra.get("winner_latency"):
        L += ["## Configuration to ship", ""]
        w = extra.get("winner_throughput")
        if w:
            L.append(f"- Throughput (tiles of a scene, >= 4 in flight): **{w['label']}** "
                     f"({w['ratio_at_4plus']}x in-process).")
        w = extra.get("winner_latency")
        if w:
            L.append(f"- One request at a time (latency): **{w['label']}** "
                     f"(p50 {w['p50_at_1_ms']} ms, {w['latency_over_inprocess_ms']} ms over in-process).")
        dyn = extra.get("dynamic_batching") or []
        if dyn:
            gains = [r["gain"] for r in dyn if r["concurrency"] >= 4]
            if gains:
                L.append(f"- Dynamic batching on/off at >= 4 in flight: median gain {statistics.median(gains):.3f}x "
                         f"(range {min(gains):.2f}-{max(gains):.2f}) over {len(gains)} paired points. On CPU a batch "
                         "costs the same per tile, so batching can only add its queue delay; on a GPU it is where "
                         "the gain is (perf/gpu.sh).")
        L.append("")
    return L


def _md_models(d: dict) -> list[str]:
    """(a): the model in-process, per engine, layout and batch, and where a tile's time goes."""
    L = []
    m = d.get("models")
    if m:
        L += ["## (a) The model in-process", "",
              f"Tile {m['tile']} px; {m['flops']['conv_gflop']:.3f} GFLOP per tile in convolutions (PyTorch's counter: "
              f"{_fmt(m['flops'].get('torch_counter_gflop'), 3)}), {m['flops']['elementwise_gop']:.3f} G element-wise ops. "
              f"Peak: {m['peak']['gflops']} GFLOP/s (best float32 matrix product: onnxruntime MatMul, torch.mm, numpy). "
              f"PyTorch weights: {m.get('torch_weights')}.", "",
              "| engine | layout | batch | tiles/s (median) | best round | p50 ms | GFLOP/s (best) | of peak |",
              "|---|---|---|---|---|---|---|---|"]
        for r in sorted(m["rows"], key=lambda r: (r["engine"], r["layout"], r["batch"])):
            L.append(f"| {r['engine']} | {r['layout']} | {r['batch']} | {r['tiles_per_s']} | {r['tiles_per_s_best']} | "
                     f"{r['p50_ms']} | {r['gflops_best']} | " + ("(int8 ops) |" if "int8" in r["engine"] else
                                                                 f"{r['gflops_best'] / m['peak']['gflops']:.2f} |"))
        L.append("")
        if m.get("time_split"):
            L += ["Where a tile's time goes (onnxruntime's profiler, 1 thread, batch 1): the U-Net's layers, the input "
                  "features computed in the graph before it, NCHW <-> blocked layout reorders; the U-Net's own GFLOP/s "
                  f"({m['flops'].get('net_conv_gflop', 0):.3f} GFLOP per tile) over the time its layers take.", "",
                  "| file | ms per tile | U-Net | features | reorders | U-Net alone, of FP32 peak |", "|---|---|---|---|---|---|"]
            for k, v in m["time_split"].items():
                L.append(f"| {k} | {v['ms_per_tile']} | {100 * v['net_share']:.0f} % | {100 * v['features_share']:.0f} % "
                         f"| {100 * v['reorder_share']:.0f} % | {_fmt(v.get('net_fraction_of_peak'))} |")
            L.append("")
    return L


def _md_int8(d: dict) -> list[str]:
    """INT8: speed, quality and the decision."""
    L = []
    i8 = d.get("int8")
    if i8:
        q, s = i8["quality"], i8["speed"]
        L += ["## INT8 (onnxruntime static quantisation, `export/int8.py`)", "",
              f"Settings: {i8['settings']}.", "",
              f"- Speed (batch {s['batch']}, best layout of each, alternating FP32/INT8): FP32 {s['fp32_tiles_per_s']} tiles/s, "
              f"INT8 {s['int8_tiles_per_s']} tiles/s: **{s['speedup']}x** (bar 1.4x).",
              f"- Quality on {q['scenes']} test scenes at threshold {q['threshold']}: plume IoU FP32 {q['iou_fp32']:.4f}, "
              f"INT8 {q['iou_int8']:.4f}, |delta| **{q['iou_delta']:.4f}** (bar 0.01); INT8 mask against FP32 mask: "
              f"IoU {q['mask_iou_int8_vs_fp32']:.3f}; largest probability change {q['max_abs_prob_diff']:.3f}."
              + (f" Scenes flagged (>= {q.get('detect_pixels')} mask pixels): FP32 {q['scenes_flagged']['fp32']}, "
                 f"INT8 {q['scenes_flagged']['int8']}, both {q['scenes_flagged']['both']}." if q.get("scenes_flagged")
                 else "")
              + (" The FP32 IoU itself is low, so a 0.01 band around it is a weak test: read the mask agreement "
                 "and the flagged scenes beside it." if q["iou_fp32"] < 0.1 else ""),
              f"- Decision: {'INT8 may be served' if i8['serve'] else 'FP32 stays'} ({i8['reason']}). "
              "model_repository/ is not changed by the benchmark.", ""]
    return L


def _md_triton(d: dict, extra: dict) -> list[str]:
    """(b): every point of the perf_analyzer grid, failed points, dynamic batching on vs off."""
    L = []
    tr = d.get("triton")
    if tr:
        L += ["## (b) Triton under perf_analyzer", "",
              f"perf_analyzer (tritonclient 2.51 wheel), batch 1 per request, count windows of "
              f"{tr['settings'].get('window_requests')} requests; in-process baseline (best layout, batch 1) measured "
              "before each configuration with no server running.", "",
              "| config | protocol | in flight | tiles/s | × in-process | p50 ms | p95 ms | p99 ms | server queue ms |",
              "|---|---|---|---|---|---|---|---|---|"]
        grid = [p for p in tr["points"] if p not in (d.get("triton_local") or {}).get("points", [])]
        for p in sorted(grid, key=lambda p: (p["config"], p["protocol"], p["concurrency"])):
            L.append(f"| {p['config']} | {p['protocol']} | {p['concurrency']} | {p['infer_per_s']:.1f} | "
                     f"{p['ratio_to_inprocess']:.2f} | {p['p50_ms']:.1f} | {p['p95_ms']:.1f} | {p['p99_ms']:.1f} | "
                     f"{p['server_queue_ms']:.1f} |")
        L.append("")
        for f in tr.get("failed_points", []):
            L.append(f"- not measured: {f['config']} {f['protocol']} at {f['concurrency']} in flight: "
                     f"{f['error'].strip().splitlines()[-1] if f['error'].strip() else 'error'}")
        if tr.get("failed_points"):
            L.append("")
        if extra.get("dynamic_batching"):
            L += ["Dynamic batching on vs off (same layout, input type, protocol, concurrency):", "",
                  "| layout | input | protocol | in flight | on | off | on/off |", "|---|---|---|---|---|---|---|"]
            for r in extra["dynamic_batching"]:
                L.append(f"| {r['layout']} | {r['dtype']} | {r['protocol']} | {r['concurrency']} | {r['on']} | "
                         f"{r['off']} | {r['gain']} |")
            L.append("")
    return L


def _md_triton_local(d: dict, extra: dict) -> list[str]:
    """(b2): 1 and 8 tiles per request, over the socket and through shared memory."""
    L = []
    loc = d.get("triton_local")
    if loc:
        L += ["### (b2) Eight tiles per request, and tensors through shared memory", "",
              "The shipped layouts again, with 1 and 8 tiles per request (`methane-seg segment --batch-size 8` sends "
              "8), over the socket and through system shared memory (perf_analyzer `--shared-memory system`: what "
              "the client does when Triton runs on its host, client/shm.py). Each ratio is to in-process "
              "onnxruntime at the same batch, the mean of its runs just before and just after the configuration.",
              "",
              "| config | protocol | tiles/request | tensors | in flight | tiles/s | × in-process | p50 ms | "
              "server compute ms |", "|---|---|---|---|---|---|---|---|---|"]
        for p in sorted(loc["points"], key=lambda p: (p["config"], p["protocol"], p["batch"], _transport(p),
                                                      p["concurrency"])):
            L.append(f"| {p['config']} | {p['protocol']} | {p['batch']} | {_transport(p)} | {p['concurrency']} | "
                     f"{p['infer_per_s']:.1f} | {p['ratio_to_inprocess']:.2f} | {p['p50_ms']:.1f} | "
                     f"{p['server_compute_ms']:.1f} |")
        L.append("")
        summary = [v for v in extra.get("triton_summary", {}).values() if v["ratio_at_4plus"] is not None
                   and v["config"] in {p["config"] for p in loc["points"]}]
        if summary:
            L += ["Median ratio at >= 4 in flight:", "", "| config | protocol | tiles/request | tensors | median | lowest |",
                  "|---|---|---|---|---|---|"]
            for v in sorted(summary, key=lambda v: (v["config"], v["protocol"], v["batch"], v["transport"])):
                L.append(f"| {v['config']} | {v['protocol']} | {v['batch']} | {v['transport']} | "
                         f"{v['ratio_at_4plus']} | {v['min_ratio_at_4plus']} |")
            L.append("")
    return L


def _md_peer(d: dict) -> list[str]:
    """(c): Triton beside the plain web server."""
    L = []
    pe = d.get("peer")
    if pe:
        L += ["## (c) Triton beside a plain web server running the model in each request", "",
              f"Same Python client (perf/bench_peer.py), one tile per request over HTTP; in-process onnxruntime in "
              f"the same run: {pe['inprocess_tiles_per_s']} tiles/s.", "",
              "| target | in flight | tiles/s | p50 ms | p95 ms |", "|---|---|---|---|---|"]
        for r in sorted(pe["table"], key=lambda r: (r["in_flight"], r["target"])):
            L.append(f"| {r['target']} | {r['in_flight']} | {r['tiles_per_s']} | {r['p50_ms']} | {r['p95_ms']} |")
        L.append("")
    return L


def _md_budget(d: dict) -> list[str]:
    """What the 5490 x 5490 target allows the model per tile."""
    L = []
    budget = cost_budget(d)
    if budget:
        L += ["## The model's cost against the 5490 x 5490 target", "",
              f"At the FP32 rate measured in (a) ({budget['measured_gflops']} GFLOP/s, median rounds), a "
              f"{budget['scene']}x{budget['scene']} scene in {budget['seconds']:.0f} s allows per tile (model compute "
              "only; the client's reading, blending and writing come on top):", "",
              "| tile | overlap | tiles | tiles/s needed | GFLOP/tile allowed | served model's GFLOP/tile |",
              "|---|---|---|---|---|---|"]
        for r in budget["rows"]:
            L.append(f"| {r['tile']} | {r['overlap']} | {r['tiles']} | {r['tiles_per_s_needed']} | "
                     f"{r['max_gflop_per_tile_at_measured_rate']} | {r['served_model_gflop_per_tile']} |")
        if budget.get("served_val_iou") is not None:
            L.append(f"\nServed model: {budget.get('served_architecture')}, validation plume IoU "
                     f"{budget['served_val_iou']:.4f} (metadata.json); a cheaper model must be judged on the same "
                     "quality figures (`make model`, docs/report).")
        L.append("")
    return L


def _md_client(d: dict) -> list[str]:
    """(d): the whole scene through the client, as shipped and served otherwise."""
    L = []
    cl = d.get("client")
    if cl:
        L += ["## (d) The client on a whole scene", "",
              f"{cl['size']}x{cl['size']} px, {cl['tiles']} tiles ({cl.get('source_tiles')} centred on the "
              f"{cl.get('plumes')} plumes for the source heat map, {cl.get('source_views')} views each): "
              f"{cl['seconds']} s, {cl['tiles_per_s']} tiles/s, "
              f"peak RSS {cl['peak_rss_mb']} MB ({cl['protocol']}, batch {cl['batch_size']}, {cl['concurrency']} in "
              "flight, Triton as shipped).", ""]
        if d.get("client_variants"):
            L += ["The same scene served from modified copies of the repository (model_repository/ unchanged), or "
                  "sent over the socket instead of shared memory:", "",
                  "| served as | model file | tensors | scene px | tiles (for the heat map x views) | seconds | "
                  "tiles/s | peak RSS MB |",
                  "|---|---|---|---|---|---|---|---|",
                  f"| shipped | {cl.get('onnx', 'model.onnx')} | {cl.get('transport', 'socket')} | {cl['size']} | "
                  f"{cl['tiles']} ({cl.get('source_tiles')} x {cl.get('source_views')}) | {cl['seconds']} | "
                  f"{cl['tiles_per_s']} | {cl['peak_rss_mb']} |"]
            for v in d["client_variants"]:
                L.append(f"| {v['variant']} | {v['onnx']} | {v.get('transport', 'socket')} | {v['size']} | "
                         f"{v['tiles']} ({v.get('source_tiles')} x {v.get('source_views')}) | {v['seconds']} | "
                         f"{v['tiles_per_s']} | {v['peak_rss_mb']} |")
            L.append("")
    return L


def _md_upload(d: dict) -> list[str]:
    """(e): the Locust runs against the web app."""
    L = []
    up = d.get("upload")
    if up:
        L += ["## (e) Locust against the Flask API", "",
              f"`{up['locustfile']}`, headless, loopback, distinct uploads (no answers from the store), no wait "
              "between a user's uploads.", "",
              "| users | size | requests | errors | req/s | p50 s | p95 s | p99 s | slowest s | Locust p95 ms (rounded) |",
              "|---|---|---|---|---|---|---|---|---|---|"]
        big = up.get("largest")
        for r in up["runs"] + ([big] if big else []):
            L.append(f"| {r['users']} | {r['size']} | {r['requests']} | {r['errors']} | {_fmt(r['requests_per_s'])} | "
                     f"{_fmt(r['p50_s'])} | {_fmt(r['p95_s'])} | {_fmt(r['p99_s'])} | {_fmt(r.get('max_s'))} | "
                     f"{r['locust']['p95_ms']} |")
        if big:
            L.append(f"\nThe last row: one user uploading {big['size']} x {big['size']} scenes, the largest the web "
                     "app answers in the request itself (SYNC_MAX_PIXELS); its target is every upload answered "
                     f"within {up.get('target_largest_s', 10.0):g} s, so the slowest is the figure.")
        L.append("")
    return L


def markdown(d: dict, targets: list[dict], extra: dict, title: str, png_name: str) -> str:
    """RESULTS.md: the conditions, the targets, the configuration to ship, then one section per part."""
    L = (_md_header(d, title)
         + _md_targets(targets, png_name)
         + _md_ship(extra)
         + _md_models(d)
         + _md_int8(d)
         + _md_triton(d, extra)
         + _md_triton_local(d, extra)
         + _md_peer(d)
         + _md_budget(d)
         + _md_client(d)
         + _md_upload(d))
    return "\n".join(L) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--work", required=True, help="folder with the benchmarks' JSON files")
    p.add_argument("--out", default=str(Path(__file__).resolve().parent))
    p.add_argument("--title", default="Performance results (issue #8)")
    a = p.parse_args(argv)
    d = load(Path(a.work))
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    targets, extra = compute_targets(d)
    plot(d, out / "results.png")
    (out / "RESULTS.md").write_text(markdown(d, targets, extra, a.title, "results.png"))
    extra["cost_budget"] = cost_budget(d)
    (out / "results.json").write_text(json.dumps({"targets": targets, "derived": extra, "raw": d}, indent=1,
                                                 default=str) + "\n")
    for t in targets:
        print(f"{t['status']:12s} {t['target']}: {_fmt(t['measured'], 3)} {t['unit']} (goal {t['goal']})")
    print(f"wrote {out / 'RESULTS.md'}, {out / 'results.png'}, {out / 'results.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
