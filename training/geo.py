"""Georeferencing over real oil-and-gas regions: UTM CRS and 20 m transforms."""

from __future__ import annotations

import numpy as np
from rasterio.crs import CRS
from rasterio.transform import from_origin
from rasterio.warp import transform as warp_transform

PIXEL_M = 20.0

# name: (lon_min, lon_max, lat_min, lat_max)
REGIONS = {
    "permian_delaware": (-104.2, -103.2, 31.4, 32.5),   # UTM 13N (EPSG:32613)
    "permian_midland": (-102.3, -101.5, 31.4, 32.5),    # UTM 14N (EPSG:32614)
    "hassi_messaoud": (5.6, 6.6, 31.4, 32.1),           # UTM 31N / 32N
    "turkmenistan_west": (54.0, 55.5, 38.6, 39.6),      # UTM 40N
    "turkmenistan_galkynysh": (61.5, 62.7, 37.2, 37.8), # UTM 41N
}


def utm_epsg(lon: float, lat: float) -> int:
    zone = int((lon + 180) // 6) + 1
    return (32600 if lat >= 0 else 32700) + zone


def georef(rng: np.random.Generator, n: int):
    """Random scene footprint in one region: (crs, transform, region name)."""
    name = list(REGIONS)[int(rng.integers(len(REGIONS)))]
    lo0, lo1, la0, la1 = REGIONS[name]
    lon, lat = rng.uniform(lo0, lo1), rng.uniform(la0, la1)
    crs = CRS.from_epsg(utm_epsg(lon, lat))
    xs, ys = warp_transform(CRS.from_epsg(4326), crs, [lon], [lat])
    half = n * PIXEL_M / 2
    x0 = np.floor((xs[0] - half) / PIXEL_M) * PIXEL_M  # snap to the 20 m grid
    y0 = np.ceil((ys[0] + half) / PIXEL_M) * PIXEL_M
    return crs, from_origin(float(x0), float(y0), PIXEL_M, PIXEL_M), name


def pixel_to_lonlat(crs, transform, rows, cols):
    """Pixel (row, col) coordinates (centres at integers) -> lists of lon, lat (WGS84)."""
    xs, ys = [], []
    for r, c in zip(rows, cols):
        x, y = transform @ (c + 0.5, r + 0.5)
        xs.append(x)
        ys.append(y)
    if not xs:
        return [], []
    lon, lat = warp_transform(crs, CRS.from_epsg(4326), xs, ys)
    return list(lon), list(lat)
