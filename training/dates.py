"""The state of a site on one date: what a pass sees that another pass of the same place does not.

    target = draw_pass(rng, site, lat, doy, anchors)
    reference = draw_pass(rng, site, lat, doy - days, anchors, target=target, days=days)

Sun position from the day of year and Sentinel-2's 10:30 descending-node local time; haze and
clouds of the date; crop phenology (from the day of year) and irrigation per parcel; natural
vegetation vigour; rain-wetted soil in patches; localised wet patches (watered pads and roads,
spills, irrigation leaks) anchored at places where sources can be, whether a source is there or
not; water level and wet shore; which flares burn; pads built and land burnt between the dates;
and the sensor: its SNR (falling with the sun), noise model, per-band gains, a detector
boundary gain step, and the sub-pixel resampling phase (the reference's differs from the
target's by the misregistration). Target and reference come from the same distributions, so the
reference is not systematically cleaner than the target.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from training.noise import fbm, smooth_field, threshold_fraction

OVERPASS_LST_H = 10.5  # Sentinel-2 mean local solar time at the descending node
REVISIT_DAYS = 5  # same relative orbit every 5 days (two satellites)
# SNR of B11 at reflectance 0.3 (B12's is 0.9 of it), drawn log-uniform: at 100 B12's per-pixel noise
# over bright land is about 1.1 %, at 400 about 0.3 %, spanning both figures of PHYSICS.md ("SNR of
# order 100-200 over bright surfaces", "B12 noise about 0.2-0.8 % over land").
SNR_RANGE = (100.0, 400.0)
SNR_REF_SZA_DEG = 40.0  # the drawn SNR holds at this sun zenith angle; radiance (and SNR) scale with cos(SZA)
MAX_MISREGISTRATION_PX = 0.4
CLOUD_P, CLOUD_COVER = 0.3, (0.02, 0.3)
AOD_RANGE = (0.03, 0.4)
RAIN_P = 0.12
WET_PATCHES_MEAN = 0.5
WET_STREAK_P = 0.4
GAIN_SD, STEP_SD, STEP_P = 0.004, 0.004, 0.3


def sun_position(lat_deg: float, doy: float, lst_h: float) -> tuple[float, float]:
    """(solar zenith, solar azimuth clockwise from north) in degrees (declination from the day of year)."""
    decl = np.deg2rad(23.44) * np.sin(2 * np.pi * (284 + doy) / 365)
    lat = np.deg2rad(lat_deg)
    h = np.deg2rad(15.0 * (lst_h - 12.0))
    cos_z = np.sin(lat) * np.sin(decl) + np.cos(lat) * np.cos(decl) * np.cos(h)
    az = np.degrees(np.arctan2(np.sin(h), np.cos(h) * np.sin(lat) - np.tan(decl) * np.cos(lat))) + 180.0
    return float(np.degrees(np.arccos(np.clip(cos_z, -1, 1)))), float(az % 360)


def draw_days(rng) -> int:
    """Days between reference and target: mostly whole revisit cycles (same orbit), sometimes an adjacent orbit."""
    k = int(round(np.exp(rng.uniform(0, np.log(12)))))
    days = REVISIT_DAYS * k
    if rng.random() < 0.35:
        days += int(rng.choice([-3, -2, 2, 3]))
    return max(2, days)


@dataclass
class Sensor:
    snr_swir: float  # SNR of B11 at reflectance 0.3 for this pass's sun
    noise_alpha: float  # signal-dependence of the noise: sd ~ sqrt(alpha + rho)
    gains: np.ndarray  # (6,) relative radiometric gain of each band
    step: dict | None  # detector boundary: {"angle", "offset", "gains" (6,)} or None
    phase: tuple[float, float]  # sub-pixel resampling shift (rows, cols) of this pass on the site grid


@dataclass
class PassState:
    doy: float
    days_before: int
    sza: float
    saa: float
    vza: float
    aod: float
    clouds: bool
    cloud_cover: float
    rain: np.ndarray | None  # (N, N) soil wetness from rain, or None
    rain_cover: float
    wet_patches: list  # {"row", "col", "radius", "wetness"}
    level: float  # water level (m) against the nominal
    shore_wet: tuple[float, float]  # (amount, width_m) of the wet strip above the water line
    turbidity: float
    veg_green: float  # greenness of the natural vegetation (0 dry .. 1 green)
    parcel_wet: np.ndarray | None  # (P + 1,) irrigation wetness per parcel
    flares_on: list  # per site flare: emission scale, 0 when off
    built: bool  # planned pads exist on this date
    burnt: bool  # the fresh burn scar exists on this date
    sensor: Sensor
    lst_h: float = OVERPASS_LST_H
    extra: dict = field(default_factory=dict)

    @property
    def amf(self) -> float:
        return float(1 / np.cos(np.deg2rad(self.sza)) + 1 / np.cos(np.deg2rad(self.vza)))


def _rain(rng, n: int) -> tuple[np.ndarray, float]:
    """Soil wetness after a shower: convective cells (a few km) thresholded from a smooth field, drying unevenly."""
    f = fbm(rng, n, scales=(rng.uniform(40, 200), 20), weights=(1, 0.3))
    cover = float(rng.uniform(0.05, 0.9))
    t = threshold_fraction(f, cover)
    inside = np.clip((f - t) / 0.5, 0, 1)
    dry = np.clip(1 + 0.3 * smooth_field(rng, n, rng.uniform(5, 20)), 0.3, 1.5)
    return (inside * dry * np.float32(rng.uniform(0.03, 0.35))).astype(np.float32), cover


def _sensor(rng, sza: float, target: PassState | None, same_orbit: bool, misreg) -> Sensor:
    snr = float(np.exp(rng.uniform(*np.log(SNR_RANGE)))) * np.cos(np.deg2rad(sza)) / np.cos(np.deg2rad(SNR_REF_SZA_DEG))
    gains = (1 + rng.normal(0, GAIN_SD, 6)).astype(np.float32)
    step = None
    t_step = target.sensor.step if target is not None else None
    if same_orbit and t_step is not None:  # the same detectors see the same ground
        has = rng.random() < 0.9
        where = (t_step["angle"], t_step["offset"])
    else:
        has = rng.random() < STEP_P
        where = (float(rng.normal(0, 12)), float(rng.uniform(-0.45, 0.45)))
    if has:
        step = {"angle": where[0], "offset": where[1], "gains": rng.normal(0, STEP_SD, 6).astype(np.float32)}
    if target is None:
        phase = tuple(float(v) for v in rng.uniform(-0.5, 0.5, 2))
    else:
        phase = (target.sensor.phase[0] + misreg[0], target.sensor.phase[1] + misreg[1])
    return Sensor(snr_swir=float(snr), noise_alpha=float(rng.uniform(0.05, 1.0)), gains=gains, step=step, phase=phase)


def draw_pass(rng, site, lat: float, doy: float, anchors, clouds: bool | None = None,
              target: PassState | None = None, days: int = 0, force: dict | None = None) -> PassState:
    """One date's state. With `target`, this is its reference `days` earlier: continuous quantities
    (water level, vegetation) drift from the target's by an amount growing with `days`.

    force (reference only): {change kind: True / False} makes a change happen or not where the site
    allows: "rain_soil", "wet_patch", "water_level", "flare", "construction", "burn"; "shift": (dy, dx).
    """
    force = force or {}
    n = site.n
    doy = float(doy % 365)
    lst = OVERPASS_LST_H + float(rng.normal(0, 0.12))
    sza, saa = sun_position(lat, doy, lst)
    same_orbit = target is not None and days % REVISIT_DAYS == 0
    if target is None or not same_orbit:
        vza = float(rng.uniform(0, 11))
    else:
        vza = float(np.clip(target.vza + rng.normal(0, 0.3), 0, 11.5))
    aod = float(rng.uniform(*AOD_RANGE))
    has_clouds = rng.random() < CLOUD_P  # drawn even when forced, so forcing leaves the other draws alone
    has_clouds = has_clouds if clouds is None else bool(clouds)
    cover = float(rng.uniform(*CLOUD_COVER))
    cover = cover if has_clouds else 0.0
    rained = force.get("rain_soil", rng.random() < RAIN_P)
    rain, rain_cover = _rain(rng, n) if rained else (None, 0.0)
    n_wet = int(rng.poisson(WET_PATCHES_MEAN))
    if force.get("wet_patch"):
        n_wet = max(n_wet, 1)
    elif force.get("wet_patch") is False:
        n_wet = 0
    wet_patches = []
    for _ in range(n_wet):
        radius = float(rng.uniform(1.5, 10))
        # some are streaks (run-off, a watered track, a leak along a slope): plume-shaped look-alikes
        aspect = float(rng.uniform(2, 6)) if rng.random() < WET_STREAK_P else 1.0
        angle = float(rng.uniform(0, np.pi * 2))
        if len(anchors) and rng.random() < 0.6:
            r, c = anchors[int(rng.integers(len(anchors)))]
            r, c = r + rng.normal(0, 4), c + rng.normal(0, 4)
            if aspect > 1:  # a streak starts at the place and runs away from it
                r, c = r - 0.8 * radius * np.cos(angle), c + 0.8 * radius * np.sin(angle)
        else:
            r, c = rng.uniform(0, n, 2)
        wet_patches.append({"row": float(r), "col": float(c), "radius": radius, "aspect": aspect, "angle": angle,
                            "wetness": float(rng.uniform(0.1, 0.6))})
    if target is None:
        level = float(rng.normal(0, 0.3))
    else:
        sd = 0.03 + 0.04 * np.sqrt(days)
        if force.get("water_level"):
            sd = max(sd, 0.4)
        level = float(target.level + rng.normal(0, sd) * (0.0 if force.get("water_level") is False else 1.0))
    shore_wet = (float(rng.uniform(0.1, 0.8)), float(rng.uniform(0.03, 0.25)))
    turbidity = float(rng.uniform(0, 1))
    season = 0.5 + 0.5 * np.cos(2 * np.pi * (doy - site.veg_peak_doy) / 365)
    veg_green = float(np.clip(0.15 + 0.6 * season + rng.normal(0, 0.05) + (0.15 if rained else 0.0), 0, 1))
    parcel_wet = None
    if site.parcels is not None:
        p = site.parcels
        parcel_wet = np.where(p.irrigated & (rng.random(len(p.crop)) < 0.25), rng.uniform(0.15, 0.7, len(p.crop)), 0.0)
    flares = []
    for fl in site.flares:
        on = rng.random() < fl["p_on"]
        flares.append(float(on) * float(np.exp(rng.normal(0, 0.4))))
    if target is not None and site.flares and "flare" in force:
        flares = list(target.flares_on)  # False: every flare as on the target date
        if force["flare"]:  # True: the first flare burns on one date only
            flares[0] = 0.0 if target.flares_on[0] > 0 else float(np.exp(rng.normal(0, 0.4)))
    built = target is None or (not site.planned) or (force.get("construction") is False)
    burnt = site.fresh_burn is not None and (target is None or force.get("burn") is False)
    if target is not None and isinstance(force.get("shift"), (tuple, list)):
        misreg = tuple(float(v) for v in force["shift"])
    else:
        rad = min(abs(rng.normal(0, 0.15)), MAX_MISREGISTRATION_PX)
        ang = rng.uniform(0, 2 * np.pi)
        misreg = (float(rad * np.sin(ang)), float(rad * np.cos(ang)))
    sensor = _sensor(rng, sza, target, same_orbit, misreg)
    return PassState(doy=doy, days_before=int(days), sza=sza, saa=saa, vza=vza, aod=aod, clouds=has_clouds,
                     cloud_cover=cover, rain=rain, rain_cover=rain_cover, wet_patches=wet_patches, level=level,
                     shore_wet=shore_wet, turbidity=turbidity, veg_green=veg_green, parcel_wet=parcel_wet,
                     flares_on=flares, built=built, burnt=burnt, sensor=sensor, lst_h=lst)

