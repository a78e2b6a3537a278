"""``python -m gcn_numpy.train`` in a subprocess, at tiny sizes: its outputs and its errors
(signals and resuming: tests/test_reliability.py)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import TINY_RUN, npz_arrays, read_csv, run_cli
from PIL import Image

from gcn_numpy import data
from gcn_numpy.zoo import load_model

TINY = [*TINY_RUN, "--backend", "numpy"]


def test_texture_run_writes_every_output(tmp_path):
    out = tmp_path / "run"
    r = run_cli(
        *TINY, "--iterations", "4", "--checkpoint-every", "2", "--out", str(out), cwd=tmp_path
    )
    assert r.returncode == 0, r.stderr
    config = json.loads((out / "config.json").read_text())
    assert config["preset"] == "texture" and config["iterations"] == 4
    rows = read_csv(out / "metrics.csv")
    assert [int(r["iteration"]) for r in rows] == [1, 2, 3, 4]
    for key in ("f_obs", "f_syn", "energy", "grad_norm", "seconds"):
        assert all(np.isfinite(float(r[key])) for r in rows)
    chains = sorted(os.listdir(out / "synthesized"))
    assert chains == ["chain_00.png", "chain_01.png", "chain_02.png"]
    with Image.open(out / "synthesized" / "chain_00.png") as im:
        assert im.size == (24, 24) and im.mode == "L"  # the samples are 1.5 x --size
    for name in ("grid.png", "curves.png", "filters.png"):
        with Image.open(out / name) as im:
            im.verify()
    with Image.open(out / "chains.gif") as im:
        assert im.n_frames >= 1
    state = npz_arrays(out / "checkpoint.npz")
    # the chains' canvas adds the texture net's receptive field, 19 px, on each side
    assert int(state["iteration"]) == 4 and state["chains"].shape == (3, 1, 62, 62)
    assert not list(out.glob("*.tmp-*")), "a temporary checkpoint was left behind"


def test_with_no_preset_the_run_is_the_default_one_chain_preset(tmp_path):
    out = tmp_path / "default"
    args = "--iterations 1 --size 36 --langevin-steps 1 --drift-steps 0 --quiet"
    r = run_cli(*args.split(), "--out", str(out), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    config = json.loads((out / "config.json").read_text())
    assert config["preset"] == "texture-one-chain" and config["chains"] == 1
    state = npz_arrays(out / "checkpoint.npz")
    assert state["chains"].shape == (1, 1, 54 + 2 * 33, 54 + 2 * 33)  # 1.5 x 36 + the margin
    assert sorted(os.listdir(out / "synthesized")) == ["chain_00.png"]
    with Image.open(out / "synthesized" / "chain_00.png") as im:
        assert im.size == (54, 54)


def test_the_convergent_preset_runs_its_three_stages(tmp_path):
    out = tmp_path / "convergent"
    args = "--preset texture-convergent --iterations 1 --size 36 --chains 2 --langevin-steps 1"
    r = run_cli(*args.split(), "--drift-steps", "0", "--quiet", "--out", str(out), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    rows = read_csv(out / "metrics.csv")
    assert [int(r["layers"]) for r in rows] == [1, 2, 3]  # one iteration per grown stage
    state = npz_arrays(out / "checkpoint.npz")
    side = round(36 * 128 / 112) + 2 * 33  # the chains' canvas, 8/7 of 36 px, + the margin
    assert state["chains"].shape == (2, 1, side, side) and side == 107


def test_cd_run_writes_reconstructions(tmp_path):
    out = tmp_path / "cd"
    r = run_cli(*TINY, "--preset", "cd", "--iterations", "3", "--out", str(out), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    with Image.open(out / "reconstructions.png") as im:
        im.verify()
    rows = read_csv(out / "metrics.csv")
    assert all(float(r["recon_error"]) > 0 for r in rows)
    assert npz_arrays(out / "checkpoint.npz")["chains"].shape[0] == 10


def test_object_run_on_a_folder_of_color_images(tmp_path):
    folder = tmp_path / "faces"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(folder / f"{i}.jpg")
    out = tmp_path / "obj"
    objects = ["--preset", "object", "--image", str(folder), "--iterations", "2"]
    r = run_cli(*TINY, *objects, "--out", str(out), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    state = npz_arrays(out / "checkpoint.npz")
    assert state["obs"].shape == (3, 3, 16, 16)
    with Image.open(out / "synthesized" / "chain_00.png") as im:
        assert im.mode == "RGB"


def test_synth_size_makes_larger_chains(tmp_path):
    out = tmp_path / "big"
    r = run_cli(*TINY, "--iterations", "2", "--synth-size", "20", "--out", str(out), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    with Image.open(out / "synthesized" / "chain_00.png") as im:
        assert im.size == (20, 20)


def _bad_inputs(tmp_path):
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    corrupt = tmp_path / "corrupt.npz"
    corrupt.write_bytes(b"PK\x03\x04 garbage")
    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, something=np.zeros(3))
    return [
        (["--image", str(tmp_path / "missing.png")], "no such file"),
        (["--image", str(text)], "not an image"),
        (["--size", "2"], "receptive field"),
        (["--chains", "0"], "must be an integer >= 1"),
        (["--size", "-1"], "must be an integer >= 1"),
        (["--iterations", "many"], "expected an integer"),
        (["--step-size", "0"], "positive number"),
        (["--preset", "faces"], "invalid choice"),
        (["--backend", "tensorflow"], "invalid choice"),
        (["--resume", str(corrupt)], "checkpoint"),
        (["--resume", str(foreign)], "checkpoint"),
        (["--resume", str(tmp_path / "nothing.npz")], "no such checkpoint"),
        (["--synth-size", "2"], "receptive field"),
        (["--observed-window", "1.5"], "fraction of the image side"),
        (["--temper-start", "0.5"], "must be a temperature >= 1, got 0.5"),
        (["--temper-steps", "0"], "must be an integer >= 1"),
    ]


def test_bad_input_exits_2_with_one_line(tmp_path):
    for args, message in _bad_inputs(tmp_path):
        r = run_cli(*TINY, "--iterations", "1", "--out", str(tmp_path / "x"), *args, cwd=tmp_path)
        assert r.returncode == 2, (args, r.stderr)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], (args, r.stderr)
        assert "Traceback" not in r.stderr


def test_resume_rejects_a_changed_configuration(tmp_path):
    out = tmp_path / "run"
    assert run_cli(*TINY, "--iterations", "1", "--out", str(out), cwd=tmp_path).returncode == 0
    r = run_cli("--resume", str(out / "checkpoint.npz"), "--chains", "5", cwd=tmp_path)
    assert r.returncode == 2 and "only --iterations" in r.stderr


def test_object_without_scikit_image_asks_for_the_data_extra(tmp_path):
    try:
        import skimage  # noqa: F401

        pytest.skip("scikit-image is installed: the faces load")
    except ImportError:
        pass
    r = run_cli(*TINY, "--preset", "object", "--iterations", "1", cwd=tmp_path)
    assert r.returncode == 2 and "gcn_numpy[data]" in r.stderr


def test_non_finite_values_stop_with_a_message_and_keep_the_last_good_state(tmp_path):
    out = tmp_path / "nan"
    r = run_cli(*TINY, "--iterations", "3", "--step-size", "1e150", "--out", str(out), cwd=tmp_path)
    assert r.returncode == 1
    assert "iteration 1" in r.stderr and "Traceback" not in r.stderr
    state = npz_arrays(out / "checkpoint.npz")
    assert int(state["iteration"]) == 0 and np.all(np.isfinite(state["chains"]))


def test_a_huge_learning_rate_under_the_clip_is_still_caught_before_a_checkpoint(tmp_path):
    """The release's clip bounds each step by lr x 20, so the spike test is off; a rate so
    large that the weights' step makes the chains overflow is caught as non-finite, and
    nothing non-finite reaches the checkpoint."""
    out = tmp_path / "lr"
    r = run_cli(*TINY, "--iterations", "6", "--lr", "1e30", "--out", str(out), cwd=tmp_path)
    assert r.returncode == 1 and "non-finite" in r.stderr and "Traceback" not in r.stderr
    state = npz_arrays(out / "checkpoint.npz")
    rows = state.pop("metrics")  # rolled-back rows record what went wrong, inf and all
    assert all(np.all(np.isfinite(v)) for v in state.values() if v.dtype.kind == "f")
    assert np.isfinite(rows[rows[:, -2] == 0]).all() and not np.isfinite(rows).all()


def test_the_commands_start_without_the_slow_imports():
    # Matplotlib, scipy.signal and scipy.ndimage took about 3 s of a command's 4 s start on
    # a 2-core machine; they are imported where first used, so that --help, a refused
    # input or --list answer at once.
    code = (
        "import sys, gcn_numpy.train, gcn_numpy.sample; "
        "print([m for m in ('matplotlib', 'scipy.signal', 'scipy.ndimage') if m in sys.modules])"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


def test_help_explains_every_option():
    r = subprocess.run(
        [sys.executable, "-m", "gcn_numpy.train", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0
    for option in (
        "--preset",
        "--image",
        "--size",
        "--iterations",
        "--chains",
        "--langevin-steps",
        "--step-size",
        "--sigma",
        "--lr",
        "--optimizer",
        "--backend",
        "--seed",
        "--out",
        "--resume",
        "--checkpoint-every",
        "--synth-size",
    ):
        assert option in r.stdout
    flat = "".join(r.stdout.split())  # argparse wraps lines, at hyphens too
    assert "parallelLangevinchainsM~(texture-one-chain:1)" in flat  # the default's value


def test_the_chain_restart_options_reach_the_configuration():
    from gcn_numpy.train import build_parser, config_from_args

    args = ["--rejuvenate-from", "tempered", "--tempered-restart", "0.5"]
    config = config_from_args(build_parser().parse_args(args))
    assert (config.rejuvenate_from, config.tempered_restart) == ("tempered", 0.5)
    default = config_from_args(build_parser().parse_args([]))
    assert (default.rejuvenate_from, default.tempered_restart) == ("alternate", 0.0)
    small = config_from_args(build_parser().parse_args(["--preset", "texture"]))
    assert (small.rejuvenate_from, small.tempered_restart) == ("zeros", 0.0)
    args = ["--temper-steps", "200", "--temper-start", "1000"]
    config = config_from_args(build_parser().parse_args(args))
    assert (config.temper_steps, config.temper_start) == (200, 1000.0)
    assert (default.temper_steps, default.temper_start) == (100, 1e4)


def _with(args, **options):
    """``args`` with each ``--option value`` of ``options`` replaced or added."""
    args = list(args)
    for name, value in options.items():
        flag = "--" + name.replace("_", "-")
        if flag in args:
            args[args.index(flag) + 1] = str(value)
        else:
            args[-1:-1] = [flag, str(value)]
    return args


def test_a_run_ends_with_the_drift_test_of_its_model(tmp_path):
    """The final model's own Langevin dynamics, at fixed weights from a copy of the chains:
    summary.json holds the records and the verdict, drift.png shows them, the console's
    last lines say it, and the checkpoint (written before) keeps the chains as learned."""
    out = tmp_path / "run"
    r = run_cli(*_with(TINY, drift_steps=40), "--iterations", "3", "--out", str(out), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    summary = json.loads((out / "summary.json").read_text())
    drift = summary["drift"]
    assert drift["steps"] == 40 and [rec["step"] for rec in drift["records"]] == [0, 10, 30, 40]
    assert isinstance(drift["kept"], bool) and drift["kept"] == (not drift["reasons"])
    first = drift["records"][0]
    chains = npz_arrays(out / "checkpoint.npz")["chains"][:, :, 19:-19, 19:-19]  # the samples
    mean = json.loads((out / "config.json").read_text())["mean"][0]
    assert abs(first["mean"] - (chains.mean() + mean)) < 1e-3  # step 0 is the final chains
    assert drift["records"][-1]["mean"] != first["mean"]  # ... and the steps moved them
    assert "own dynamics, 40 steps at fixed weights" in r.stdout
    # the data beside the chains: the training images' mean and std as the records measure them
    model = load_model(str(out / "checkpoint.npz"), backend="numpy")
    training = data.load_training_images(model.config)
    assert drift["data_mean"] == pytest.approx(float(training.mean()))
    units = training - model.mean[None, :, None, None]  # as the records measure the chains
    assert drift["data_std"] == pytest.approx(float(units.std(axis=(1, 2, 3)).mean()))
    assert f"(data {drift['data_std']:.1f})" in r.stdout
    with Image.open(out / "drift.png") as im:
        im.verify()
    assert int(npz_arrays(out / "checkpoint.npz")["iteration"]) == 3


def test_the_drift_tests_data_std_of_a_colour_image_is_about_each_channels_mean(tmp_path):
    """The chains' std in the records is about each channel's mean (model units); so is
    the data's beside it, not the std of the 0-255 values, which the channels' different
    means would widen."""
    rng = np.random.default_rng(0)
    pixels = rng.normal(128, 20, (40, 40, 3)) + np.array([-80.0, 0.0, 80.0])  # offset channels
    image = tmp_path / "colour.png"
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(image)
    out = tmp_path / "run"
    args = _with(TINY, drift_steps=10)
    r = run_cli(*args, "--image", str(image), "--iterations", "2", "--out", str(out), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    drift = json.loads((out / "summary.json").read_text())["drift"]
    model = load_model(str(out / "checkpoint.npz"), backend="numpy")
    training = data.load_training_images(model.config)
    units = training - model.mean[None, :, None, None]
    assert drift["data_std"] == pytest.approx(float(units.std(axis=(1, 2, 3)).mean()))
    assert drift["data_std"] < 0.5 * float(training.std(axis=(1, 2, 3)).mean())


def test_the_samples_leave_out_the_margin_in_every_output(tmp_path):
    """With --synth-margin the chains run on a larger canvas, and every picture, the
    checkpoint's samples and the summary's canvas are its interior."""
    out = tmp_path / "run"
    args = _with(TINY, drift_steps=10)
    r = run_cli(*args, "--synth-margin", "5", "--iterations", "2", "--out", str(out), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert npz_arrays(out / "checkpoint.npz")["chains"].shape == (3, 1, 34, 34)
    with Image.open(out / "synthesized" / "chain_00.png") as im:
        assert im.size == (24, 24)
    assert json.loads((out / "summary.json").read_text())["canvas"] == [24, 24]
