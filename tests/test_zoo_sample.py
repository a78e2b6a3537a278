"""Learned models as files (gcn_numpy.zoo) and ``python -m gcn_numpy.sample``: loading
shipped models, model files and checkpoints, sampling at any size, reproducibility, the
auto-encoding and the mode of a user's image, and bad input."""

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli
from PIL import Image

from gcn_numpy import GenerativeConvNet, Layer
from gcn_numpy.learning import receptive_field
from gcn_numpy.presets import TrainConfig
from gcn_numpy.sampling import inner_window, langevin_chains, temperatures, tempered_chains
from gcn_numpy.zoo import (
    TEMPER_START,
    TEMPER_STEPS,
    ModelError,
    list_models,
    load_model,
    model_path,
    save_model,
)


def make_zoo():
    """tools/make_zoo.py as a module (its ZOO: the models that ship)."""
    path = Path(__file__).resolve().parent.parent / "tools" / "make_zoo.py"
    spec = importlib.util.spec_from_file_location("make_zoo", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tiny_model(tmp_path, top="sum", channels=1, margin="rf", **changes):
    layers = [Layer(4, 5, stride=2, padding=2), Layer(3, 3, padding=1)]
    config = TrainConfig(
        layers=[
            {"channels": l.channels, "kernel": l.kernel, "stride": l.stride, "padding": l.padding}
            for l in layers
        ],
        top=top,
        size=16,
        synth_margin=margin,
        boundary="symmetric",
        dtype="float64",
        **changes,
    )
    net = GenerativeConvNet(
        channels,
        layers,
        top=top,
        image_size=(16, 16) if top == "linear" else None,
        backend="numpy",
        dtype=np.float64,
        seed=3,
        init_std=0.3,
        boundary="symmetric",
    )
    tag = "".join(f"-{k}={v}" for k, v in sorted(changes.items()))
    path = str(tmp_path / f"tiny-{top}-{margin}{tag}.npz")
    save_model(
        path,
        net,
        config,
        np.full(channels, 100.0),
        {"learned": "a test"},
        thumbnail=np.zeros((1, 16, 16), np.uint8),
    )
    return path, net


def sample(*args, cwd):
    return subprocess.run(
        [sys.executable, "-m", "gcn_numpy.sample", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_a_model_file_round_trips_its_weights_and_samples_at_any_size(tmp_path):
    path, net = tiny_model(tmp_path)
    model = load_model(path, backend="numpy")
    for (W0, b0), (W1, b1) in zip(net.weights, model.net.weights, strict=True):
        assert np.allclose(W0, W1, rtol=1e-6) and np.allclose(b0, b1, rtol=1e-6)
    assert model.margin == 5 + 2 * 2 and model.info["learned"] == "a test"
    for size in (8, 40):
        x = model.sample(n=2, size=size, steps=5, seed=1)
        assert x.shape == (2, 1, size, size) and np.isfinite(x).all()
    a, b = model.sample(n=1, size=12, steps=3, seed=7), model.sample(n=1, size=12, steps=3, seed=7)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, model.sample(n=1, size=12, steps=3, seed=8))


def test_a_model_samples_with_the_top_positions_it_learned_its_chains_with(tmp_path):
    """A model whose synthesized side of H summed the clean top positions (within
    ``positions_tolerance`` pixels of the canvas) samples the same f: its chains are
    Langevin's with that mask, not with every position; a tolerance beyond the receptive
    field's padding counts every position. (No margin: the whole canvas is returned.)"""
    path_all, net = tiny_model(tmp_path, margin=0)
    clean = {"margin": 0, "synthesized_positions": "clean"}
    kinds = {"all": path_all}
    kinds.update({X: tiny_model(tmp_path, **clean, positions_tolerance=X)[0] for X in (0, 2, 99)})
    models = {k: load_model(p, backend="numpy") for k, p in kinds.items()}
    side = models[0].canvas(16)
    start = 30 * np.random.default_rng(5).normal(size=(2, 1, side, side))
    x = {k: m.sample(n=2, size=16, steps=4, seed=3, init=start) for k, m in models.items()}
    masks = {k: net.clean_positions(side, side, k)[-1] for k in (0, 2)}
    assert masks[0].sum() < masks[2].sum() < masks[2].size
    for k in (0, 2):
        model = models[k]
        I = langevin_chains(
            model.net,
            model.net.check_images(start),
            4,
            model.config.step_size,
            model.config.sigma,
            np.random.default_rng(3),
            B_top=masks[k][None, None],
        )
        assert np.allclose(x[k], I, rtol=1e-12, atol=1e-12)
        assert not np.allclose(x[k], x["all"])
    assert np.array_equal(x[99], x["all"])
    zero = models[2].sample(n=1, size=16, steps=2, seed=1)  # the tempered start too
    assert np.isfinite(zero).all() and not np.allclose(zero, models["all"].sample(1, 16, 2, 1))


def _energy(model, I, mask=True):
    """``U = ||I||^2 / (2 sigma^2) - f``, ``f`` summed by hand over the top map's positions
    the model's synthesized side learned with (every position with ``mask=False``): the
    oracle of ``lower_energy``."""
    net = model.net
    top = net.bottom_up(net.check_images(I))[0][-1]
    side = I.shape[-1]
    if mask:
        top = top * net.clean_positions(side, side, model.config.positions_tolerance)[-1]
    return (I * I).sum(axis=(1, 2, 3)) / (2 * model.config.sigma**2) - top.sum(axis=(1, 2, 3))


def test_the_lower_energy_of_two_canvases_is_taken_sample_by_sample(tmp_path):
    """``lower_energy`` compares each pair under the model's own f (here the clean top
    positions within 2 px), keeps ties in the first, and returns the kept canvases."""
    path, _ = tiny_model(tmp_path, margin=0, synthesized_positions="clean", positions_tolerance=2)
    model = load_model(path, backend="numpy")
    rng = np.random.default_rng(1)
    a, b = (rng.normal(size=(8, 1, 16, 16)) * rng.uniform(1, 5, size=(8, 1, 1, 1)) for _ in "ab")
    lower = _energy(model, b) < _energy(model, a)
    assert 0 < lower.sum() < 8  # both ways among the pairs ...
    assert (
        lower != (_energy(model, b, False) < _energy(model, a, False))
    ).any()  # ... and f's mask decides one
    assert np.array_equal(model.lower_energy(a, b), np.where(lower[:, None, None, None], b, a))
    assert np.array_equal(model.lower_energy(a, a.copy()), a)


def test_both_starts_are_the_start_from_zeros_or_from_noise_of_lower_energy(tmp_path):
    """``init="both"``: sample by sample, the chains from zeros (tempered start) or from
    noise, each exactly as its own ``init`` gives with that seed, whichever has the lower
    energy; the progress counts both runs."""
    path, _ = tiny_model(tmp_path, margin=0, synthesized_positions="clean", positions_tolerance=2)
    model = load_model(path, backend="numpy")
    x = {i: model.sample(n=3, size=16, steps=3, seed=7, init=i) for i in ("zeros", "noise")}
    calls = []
    both = model.sample(
        n=3, size=16, steps=3, seed=7, init="both", progress=lambda *a: calls.append(a)
    )
    lower = _energy(model, x["noise"]) < _energy(model, x["zeros"])
    assert np.array_equal(both, np.where(lower[:, None, None, None], x["noise"], x["zeros"]))
    total = TEMPER_STEPS + 3 + 3
    assert calls[-1] == (total, total) and all(t == total for _, t in calls)
    with pytest.raises(ModelError, match="choose zeros, noise, both or an image"):
        model.sample(n=1, size=16, steps=1, init="marble")


def _by_hand(model, n, size, steps, seed, temper_steps, temper_start):
    """The sample from zeros composed by hand: the tempered start (``temper_steps`` steps,
    ``T`` from ``temper_start`` down, at twice the step size), plain Langevin, the inner
    window; the oracle of ``sample``'s ``temper_*`` arguments."""
    net, cfg = model.net, model.config
    side = model.canvas(size)
    rng = np.random.default_rng(seed)
    B_top = model._top_mask(side)
    I = net.check_images(np.zeros((n, 1, side, side)))
    temps = temperatures(temper_steps, temper_start)
    I = tempered_chains(net, I, temps, 2 * cfg.step_size, cfg.sigma, rng, B_top=B_top)
    I = langevin_chains(net, I, steps, cfg.step_size, cfg.sigma, rng, B_top=B_top)
    return inner_window(I, model.margin)


@pytest.mark.parametrize("temper_steps, temper_start", [(30, 50.0), (0, 1e4), (1, 1.0)])
def test_the_tempered_start_is_the_one_asked_for(tmp_path, temper_steps, temper_start):
    """``temper_steps`` and ``temper_start`` set the tempered start from zeros (0 steps:
    plain Langevin from zeros); the defaults are the module's; the start from noise has
    none; ``both`` counts the tempered steps asked for once; bad values are refused."""
    path, _ = tiny_model(tmp_path, synthesized_positions="clean", positions_tolerance=2)
    model = load_model(path, backend="numpy")
    kw = {"temper_steps": temper_steps, "temper_start": temper_start}
    x = model.sample(n=2, size=12, steps=4, seed=5, **kw)
    hand = _by_hand(model, 2, 12, 4, 5, temper_steps, temper_start)
    assert np.allclose(x, hand, rtol=1e-12, atol=1e-12)
    default = model.sample(n=2, size=12, steps=4, seed=5)
    assert np.array_equal(default, _by_hand(model, 2, 12, 4, 5, TEMPER_STEPS, TEMPER_START))
    assert not np.allclose(x, default)
    noise = model.sample(n=2, size=12, steps=4, seed=5, init="noise")
    assert np.array_equal(noise, model.sample(n=2, size=12, steps=4, seed=5, init="noise", **kw))
    calls = []
    model.sample(n=1, size=12, steps=2, init="both", progress=lambda *a: calls.append(a), **kw)
    assert calls[-1] == (temper_steps + 4,) * 2
    for bad, message in (
        ({"temper_steps": -1}, "temper_steps must be an integer >= 0"),
        ({"temper_steps": 2.5}, "temper_steps must be an integer >= 0"),
        ({"temper_start": 0.5}, "temper_start must be a temperature >= 1"),
        ({"temper_start": float("inf")}, "temper_start must be a temperature >= 1"),
    ):
        with pytest.raises(ValueError, match=message):
            model.sample(n=1, size=12, steps=1, **bad)


def test_a_model_loads_in_the_dtype_asked_for_with_the_stored_weights(tmp_path):
    path, net = tiny_model(tmp_path)
    stored = load_model(path, backend="numpy")
    config = TrainConfig.from_dict({**stored.config.to_dict(), "dtype": "float32"})
    save_model(path, net, config, stored.mean, stored.info)  # a model learned in float32
    learned = load_model(path, backend="numpy")
    wide = load_model(path, backend="numpy", dtype="float64")
    assert learned.net.dtype == np.float32 and wide.net.dtype == np.float64
    for (W0, b0), (W1, b1) in zip(learned.net.weights, wide.net.weights, strict=True):
        assert np.array_equal(W0, W1) and np.array_equal(b0, b1)  # float32 -> float64: exact
    I = np.random.default_rng(0).normal(0, 30, (2, 1, 20, 20))
    B32, B64 = learned.reconstruct(I), wide.reconstruct(I)
    assert B64.dtype == np.float64 and np.allclose(
        B32, B64, rtol=1e-4, atol=1e-4 * np.abs(B64).max()
    )
    with pytest.raises(ValueError, match="float32 or float64"):
        load_model(path, backend="numpy", dtype="float16")


def test_an_object_model_samples_at_its_training_size_only(tmp_path):
    path, _ = tiny_model(tmp_path, top="linear")
    model = load_model(path, backend="numpy")
    assert model.sample(n=1, steps=2).shape == (1, 1, 16, 16)
    with pytest.raises(ModelError, match="training size, 16 px"):
        model.sample(n=1, size=32, steps=2)


def test_a_training_checkpoint_loads_as_a_model(tmp_path):
    out = tmp_path / "run"
    args = [
        "--preset",
        "texture",
        "--backend",
        "numpy",
        "--size",
        "16",
        "--chains",
        "2",
        "--langevin-steps",
        "2",
        "--iterations",
        "2",
        "--drift-steps",
        "0",
        "--quiet",
        "--out",
        str(out),
    ]
    assert run_cli(*args, cwd=tmp_path).returncode == 0
    model = load_model(str(out / "checkpoint.npz"), backend="numpy")
    config = json.loads((out / "config.json").read_text())
    assert model.config.layers == config["layers"] and model.mean[0] == config["mean"][0]
    assert model.sample(n=1, size=30, steps=2).shape == (1, 1, 30, 30)
    by_folder = load_model(str(out), backend="numpy")  # the run's folder names its checkpoint
    assert np.array_equal(by_folder.net.weights[0][0], model.net.weights[0][0])


def test_a_folder_named_like_a_shipped_model_does_not_hide_it(tmp_path, monkeypatch):
    (tmp_path / "gravel").mkdir()  # e.g. the user's own run, --out gravel, with no checkpoint
    monkeypatch.chdir(tmp_path)
    shipped = load_model(model_path("gravel"), backend="numpy")
    model = load_model("gravel", backend="numpy")
    assert np.array_equal(model.net.weights[0][0], shipped.net.weights[0][0])


def test_the_command_writes_the_same_bytes_for_the_same_seed(tmp_path):
    path, _ = tiny_model(tmp_path)
    outs = []
    for k in range(2):
        out = tmp_path / f"s{k}"
        options = "--size 24 --n 2 --steps 3 --backend numpy --quiet".split()
        r = sample(path, *options, "--out", str(out), cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        assert "2 samples of 24x24 px" in r.stdout
        outs.append(out)
    for name in ("sample_00.png", "sample_01.png", "grid.png"):
        assert (outs[0] / name).read_bytes() == (outs[1] / name).read_bytes()
    with Image.open(outs[0] / "sample_00.png") as im:
        assert im.size == (24, 24) and im.mode == "L"


@pytest.mark.parametrize("kept", [False, True])
def test_the_command_says_when_the_models_own_dynamics_did_not_keep_its_samples(tmp_path, kept):
    """A model whose drift test failed is sampled with one more line saying so and why; a
    model whose test passed, without it."""
    path, net = tiny_model(tmp_path)
    drift = {"steps": 1000, "kept": kept, "reasons": [] if kept else ["mean 90.0 is 9.0 from"]}
    config = load_model(path, backend="numpy").config
    info = {"learned": "a test", "summary": {"drift": drift}}
    save_model(path, net, config, np.full(1, 100.0), info, np.zeros((1, 16, 16), np.uint8))
    r = sample(path, "--size", "24", "--steps", "2", "--backend", "numpy", "--quiet", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    noted = [line for line in r.stdout.splitlines() if line.startswith("note:")]
    if kept:
        assert noted == []
    else:
        assert len(noted) == 1 and "did not keep" in noted[0]
        assert "1000 steps at fixed weights: mean 90.0 is 9.0 from" in noted[0]


def test_a_checkpoint_carries_its_runs_drift_test_where_the_summary_is_its_own(tmp_path):
    out = tmp_path / "run"
    args = "--preset texture --backend numpy --size 16 --chains 2 --langevin-steps 2"
    args += " --iterations 2"
    args = [*args.split(), "--drift-steps", "3", "--quiet", "--out", str(out)]
    assert run_cli(*args, cwd=tmp_path).returncode == 0
    drift = load_model(str(out), backend="numpy").info["summary"]["drift"]
    assert drift["steps"] == 3 and isinstance(drift["kept"], bool)
    summary = json.loads((out / "summary.json").read_text())
    summary["iterations"] += 1  # an earlier run's summary beside this checkpoint
    (out / "summary.json").write_text(json.dumps(summary))
    assert "summary" not in load_model(str(out), backend="numpy").info


def test_reconstruct_and_mode_on_a_users_image(tmp_path):
    path, _ = tiny_model(tmp_path)
    photo = tmp_path / "photo.png"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (30, 40), dtype=np.uint8)).save(photo)
    r = sample(
        path,
        "--reconstruct",
        str(photo),
        "--mode",
        str(photo),
        "--backend",
        "numpy",
        "--out",
        str(tmp_path / "o"),
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr
    assert "reconstruction: mean |sigma^2 B - I|" in r.stdout and "mode:" in r.stdout
    for name in ("reconstruction.png", "mode.png"):
        with Image.open(tmp_path / "o" / name) as im:
            im.verify()
    model = load_model(path, backend="numpy")
    I = model.from_pixels(np.asarray(Image.open(photo), dtype=float)[None, None])
    assert np.allclose(model.reconstruct(I), model.net.top_down(I)[1])  # sigma = 1: B


@pytest.mark.parametrize(
    "case, message",
    [
        ("unknown", "no model 'marble'"),
        ("damaged", "cannot read model"),
        ("small", "smaller than the net's receptive field"),
        ("colour", "is a colour image and the model's are grey"),
        ("no model", "name a model"),
        ("huge", "px canvas need about"),
        ("cold", "expected a temperature >= 1, got '0.5'"),
        ("temper steps", "expected an integer >= 0, got '-3'"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, case, message):
    path, _ = tiny_model(tmp_path)
    if case == "unknown":
        args = ["marble"]
    elif case == "damaged":
        bad = tmp_path / "bad.npz"
        bad.write_bytes(b"PK\x03\x04 not really")
        args = [str(bad)]
    elif case == "small":  # no margin: the canvas is the sample
        args = [tiny_model(tmp_path, margin=0)[0], "--size", "1", "--init", "noise"]
    elif case == "cold":
        args = [path, "--temper-start", "0.5"]
    elif case == "temper steps":
        args = [path, "--temper-steps", "-3"]
    elif case == "huge":  # refused before anything is allocated: no MemoryError
        args = [path, "--size", "200000", "--n", "1"]
    elif case == "colour":
        photo = tmp_path / "colour.png"
        Image.fromarray(np.random.default_rng(0).integers(0, 256, (20, 20, 3), np.uint8)).save(
            photo
        )
        args = [path, "--reconstruct", str(photo)]
    else:
        args = []
    r = sample(*args, "--backend", "numpy", "--out", str(tmp_path / "o"), cwd=tmp_path)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and message in lines[0], r.stderr
    assert "Traceback" not in r.stderr


def test_shipped_models_are_listed_with_what_they_learned(tmp_path):
    """The zoo ships the models tools/make_zoo.py makes, each small, each listed with what
    it learned, how it was made and what its own dynamics did at fixed weights."""
    models = dict(list_models())
    assert set(models) == set(make_zoo().ZOO)
    r = sample("--list", cwd=tmp_path)
    assert r.returncode == 0
    for name, info in models.items():
        assert name in r.stdout and info["learned"] in r.stdout and info["made"] in r.stdout
        assert re.search(rf"^{re.escape(name)}  +\d+ px", r.stdout, re.M)  # its own column
        assert os.path.getsize(model_path(name)) < 2**20
        model = load_model(name, backend="numpy")
        assert model.thumbnail is not None and model.thumbnail.dtype == np.uint8
        if model.config.mode == "ml":  # the run's drift test travels with the model
            assert info["summary"]["drift"]["steps"] == 1000
        side = None if model.size else receptive_field(model.net.layers)
        x = model.sample(n=1, size=side, steps=2, init="noise")
        assert np.isfinite(x).all()


def test_the_face_model_samples_at_its_training_size_only(tmp_path):
    model = load_model("faces", backend="numpy")
    assert model.size == (32, 32) and "Labeled Faces in the Wild" in model.info["learned"]
    assert model.sample(n=1, steps=2, init="noise").shape == (1, 1, 32, 32)
    r = sample("faces", "--size", "64", "--backend", "numpy", "--out", str(tmp_path), cwd=tmp_path)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and "training size, 32 px" in lines[0], r.stderr
    options = "--init noise --steps 2 --backend numpy --quiet".split()
    r = sample("faces", *options, "--out", str(tmp_path / "noise"), cwd=tmp_path)
    assert r.returncode == 0 and "1 sample of 32x32 px" in r.stdout, r.stderr
    assert "2 Langevin steps from noise" in r.stdout  # no tempered start from noise
    r = sample("faces", *options, "--init", "both", "--out", str(tmp_path / "both"), cwd=tmp_path)
    assert r.returncode == 0 and "tempered start from zeros and from noise, the lower" in r.stdout
    r = sample("faces", *options, "--init", "both", "--temper-steps", "5", "--temper-start", "80",
               "--out", str(tmp_path / "cool"), cwd=tmp_path)  # fmt: skip
    assert "after a tempered start of 5 steps from T = 80 from zeros and from noise" in r.stdout
    r = sample("faces", *options[2:], "--temper-steps", "0", "--out", str(tmp_path / "plain"),
               cwd=tmp_path)  # fmt: skip
    assert r.returncode == 0 and "2 Langevin steps from zeros with no tempered start" in r.stdout
