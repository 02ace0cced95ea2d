"""`methane-seg segment` against the real tritonserver, over HTTP and gRPC."""

import subprocess
import sys

import numpy as np
import pytest
import rasterio

from methane_seg.cli import EXIT_BAD_INPUT, EXIT_UNAVAILABLE, main
from serving.tritonserver import free_port
from training.metrics import SCENE_MIN_PIXELS

pytestmark = pytest.mark.slow


def assert_finds_plume(mask, truth):
    """The mask overlaps the true plume, and most of it lies on the plume (within 3 pixels)."""
    from scipy import ndimage

    plume = mask == 1
    near = ndimage.binary_dilation(truth == 1, iterations=3)
    hits = np.logical_and(plume, truth == 1).sum()
    assert truth.sum() > 50 and hits >= 10, (hits, truth.sum(), plume.sum())
    assert np.logical_and(plume, near).sum() >= 0.5 * plume.sum(), (np.logical_and(plume, near).sum(), plume.sum())


def url_for(triton, protocol):
    return triton.http_url if protocol == "http" else triton.grpc_url


def read_band(path):
    with rasterio.open(path) as ds:
        return ds.read(1), ds.profile


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_strong_plume_is_found_on_the_input_grid(triton, scenes, tmp_path, protocol):
    scene = scenes["strong"]
    code = main(["segment", str(scene), "--out", str(tmp_path), "--url", url_for(triton, protocol),
                 "--protocol", protocol])
    assert code == 0
    truth, truth_profile = read_band(scene.with_name("strong_mask.tif"))
    mask, mask_profile = read_band(tmp_path / "strong_mask.tif")
    prob, prob_profile = read_band(tmp_path / "strong_prob.tif")
    with rasterio.open(scene) as src:
        for profile, dtype in ((mask_profile, "uint8"), (prob_profile, "float32")):
            assert profile["dtype"] == dtype
            assert (profile["width"], profile["height"]) == (src.width, src.height)
            assert profile["crs"] == src.crs and profile["transform"] == src.transform
    assert np.nanmin(prob) >= 0.0 and np.nanmax(prob) <= 1.0
    assert set(np.unique(mask)) <= {0, 1}
    assert_finds_plume(mask, truth)
    assert (tmp_path / "strong_overlay.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_plume_free_scene_gives_an_empty_mask(triton, scenes, tmp_path, protocol):
    code = main(["segment", str(scenes["free"]), "--out", str(tmp_path), "--url", url_for(triton, protocol),
                 "--protocol", protocol])
    assert code == 0
    mask, _ = read_band(tmp_path / "free_mask.tif")
    assert (mask == 1).sum() < SCENE_MIN_PIXELS  # a negative scene by the seed's detection rule


def test_http_and_grpc_agree(triton, scenes, tmp_path):
    for protocol in ("http", "grpc"):
        assert main(["segment", str(scenes["strong"]), "--out", str(tmp_path / protocol),
                     "--url", url_for(triton, protocol), "--protocol", protocol]) == 0
    a, _ = read_band(tmp_path / "http" / "strong_prob.tif")
    b, _ = read_band(tmp_path / "grpc" / "strong_prob.tif")
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_small_scene_is_padded(triton, contract_scene, tmp_path):
    from tests.conftest import random_scene

    path = contract_scene("small.tif", random_scene((6, 64, 90)))
    assert main(["segment", str(path), "--out", str(tmp_path), "--url", triton.http_url]) == 0
    mask, profile = read_band(tmp_path / "small_mask.tif")
    assert mask.shape == (64, 90)


def test_unreachable_server_is_a_one_line_error(contract_scene, tmp_path, capsys):
    port = free_port()
    code = main(["segment", str(contract_scene()), "--out", str(tmp_path), "--url", f"127.0.0.1:{port}"])
    assert code == EXIT_UNAVAILABLE
    err = capsys.readouterr().err.strip()
    assert "not reachable" in err and len(err.splitlines()) == 1
    assert not list(tmp_path.glob("*_mask.tif"))


@pytest.mark.parametrize("case", ["not_tiff", "three_bands", "no_crs", "missing"])
def test_bad_input_exits_non_zero_with_one_line(triton, write_geotiff, tmp_path, capsys, case):
    from tests.conftest import random_scene

    if case == "not_tiff":
        path = tmp_path / "notes.tif"
        path.write_text("just text")
    elif case == "three_bands":
        path = write_geotiff("rgb.tif", data=random_scene((3, 80, 80)))
    elif case == "no_crs":
        path = write_geotiff("nocrs.tif", crs=None, transform=None)
    else:
        path = tmp_path / "nowhere.tif"
    out = tmp_path / "out"
    capsys.readouterr()  # what writing the bad file printed is not the CLI's
    code = main(["segment", str(path), "--out", str(out), "--url", triton.http_url])
    assert code == EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip()
    assert err.startswith("methane-seg: error: bad input:") and len(err.splitlines()) == 1
    assert not out.exists()


@pytest.mark.parametrize("option", [["--wind-speed", "-3"], ["--wind-speed", "nan"], ["--wind-to", "inf"],
                                    ["--wind-to", "400"], ["--batch-size", "0"], ["--concurrency", "-1"],
                                    ["--timeout", "0"], ["--max-size-mb", "lots"], ["--source-margin", "-1"],
                                    ["--source-margin", "some"], ["--source-views", "3"], ["--source-views", "x"]])
def test_bad_options_are_usage_errors(contract_scene, tmp_path, capsys, option):
    """Out-of-range or non-finite option values stop before any server is asked (exit 2, one line
    naming the option), rather than a traceback or a nonsense emission rate later."""
    with pytest.raises(SystemExit) as stop:
        main(["segment", str(contract_scene()), "--out", str(tmp_path / "out")] + option)
    assert stop.value.code == EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip().splitlines()
    assert f"argument {option[0]}:" in err[-1] and repr(option[1]) in err[-1]
    assert not (tmp_path / "out").exists()


def test_console_script_runs(triton, scenes, tmp_path):
    """The installed `methane-seg` entry point, as a user runs it."""
    exe = [sys.executable, "-m", "methane_seg"]
    done = subprocess.run(exe + ["segment", str(scenes["strong"]), "--out", str(tmp_path),
                                 "--url", triton.grpc_url, "--protocol", "grpc"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "plume pixels" in done.stdout


def test_a_reference_that_misses_the_scene_exits_2_before_the_server(contract_scene, tmp_path, capsys):
    """A reference pass that does not overlap the scene is bad input: one line, exit 2, no output,
    and no server is asked (none runs on this port)."""
    from core.contract import write_scene
    from tests.conftest import random_scene, utm
    from rasterio.transform import from_origin

    crs, transform = utm()
    far = tmp_path / "far.tif"
    write_scene(far, random_scene(), crs, from_origin(transform.c + 90_000, transform.f, 20, 20))
    out = tmp_path / "out"
    capsys.readouterr()
    code = main(["segment", str(contract_scene()), "--reference", str(far), "--out", str(out),
                 "--url", f"127.0.0.1:{free_port()}"])
    assert code == EXIT_BAD_INPUT and not out.exists()
    err = capsys.readouterr().err.strip()
    assert "reference: far.tif does not overlap" in err and len(err.splitlines()) == 1
    code = main(["segment", str(contract_scene()), str(contract_scene("b.tif")), "--reference", str(far),
                 "--out", str(out)])
    assert code == EXIT_BAD_INPUT and "--reference goes with one SCENE" in capsys.readouterr().err


def test_a_scene_with_its_reference_is_segmented_on_its_grid(triton, scenes, tmp_path, capsys):
    """The two-file form through the real server: the multi-pass model segments it, outputs on the
    target's grid, the reference named in the summary."""
    from core.contract import read_scene, write_scene

    scene = read_scene(scenes["strong"])  # the simulator's 12-band document: split into two files
    target, ref = tmp_path / "strong.tif", tmp_path / "ref.tif"
    write_scene(target, scene.data, scene.crs, scene.transform)
    write_scene(ref, scene.reference, scene.crs, scene.transform)
    code = main(["segment", str(target), "--reference", str(ref), "--out", str(tmp_path / "o"),
                 "--url", triton.http_url])
    assert code == 0
    assert "target + reference, ref.tif" in capsys.readouterr().out
    with rasterio.open(tmp_path / "o" / "strong_mask.tif") as ds:
        assert (ds.crs, ds.transform, ds.shape) == (scene.crs, scene.transform, (scene.height, scene.width))
