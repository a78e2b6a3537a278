"""Bad input, second round: runs too large for the memory are refused before anything is
written, flat images before anything is learned, and every number a run ends with is
defined (or says why not) for every input the command accepts."""

import json
import os
import resource
import signal
import subprocess
import sys

import numpy as np
import pytest
from conftest import TINY_RUN, npz_arrays, run_cli
from PIL import Image
from test_reliability import one_line_error, wait_for

from gcn_numpy import GenerativeConvNet, data, memory, train
from gcn_numpy.learning import Learner, chains_shape
from gcn_numpy.presets import get_preset
from gcn_numpy.summary import FLAT_SAMPLES, run_summary, summary_line, write_summary

LINUX = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
TINY = [*TINY_RUN, "--backend", "numpy"]


def strict_json(path):
    """The JSON in ``path``, refusing the NaN and Infinity that Python's json accepts."""

    def refuse(name):
        raise AssertionError(f"{path} holds {name}: not JSON")

    return json.loads(path.read_text(), parse_constant=refuse)


def assert_one_line_refusal(r, *words):
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2, r.stderr
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


# ------------------------------------------------------------------------ memory


@pytest.mark.parametrize(
    "args, lower",
    [
        (["--chains", "1000000"], "--chains"),  # 34 GiB of chains alone, 3 TiB of maps
        (["--synth-size", "100000"], "--synth-size"),  # 8 canvases of 10^10 pixels
        (["--image", "IMAGE", "--size", "30000"], "--size"),  # the canvas follows --size
    ],
)
def test_a_run_too_large_for_the_memory_is_refused_before_anything_is_written(
    tmp_path, args, lower
):
    image = tmp_path / "image.png"
    Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8)).save(image)
    args = [str(image) if a == "IMAGE" else a for a in args]
    out = tmp_path / "run"
    args = ["--preset", "texture", *args]  # the comments' numbers are `texture`'s (8 chains)
    r = run_cli(*args, "--iterations", "1", "--out", str(out), cwd=tmp_path, timeout=120)
    line = assert_one_line_refusal(r, "need about", "available", lower)
    assert "TiB" in line  # what the run needs, against what the machine has
    assert not out.exists() and not (tmp_path / "runs").exists()


def test_the_refusal_is_at_the_estimate_and_a_run_just_under_it_proceeds(
    tmp_path, capsys, monkeypatch
):
    args = [*TINY, "--iterations", "1"]
    config = train.config_from_args(train.build_parser().parse_args(args))
    needed = memory.training_bytes(config, data.training_shape(config))
    monkeypatch.setattr(memory, "available_bytes", lambda backend: needed - 1)
    status, line = one_line_error(capsys, *args, "--out", str(tmp_path / "small"))
    assert status == 2 and memory.format_bytes(needed - 1) in line, line
    assert not (tmp_path / "small").exists()
    monkeypatch.setattr(memory, "available_bytes", lambda backend: needed)
    assert train.main([*args, "--out", str(tmp_path / "enough")]) == 0


def test_a_resumed_run_is_checked_too_and_keeps_its_checkpoint(tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    assert train.main([*TINY, "--iterations", "2", "--out", str(out)]) == 0
    capsys.readouterr()
    before = (out / "checkpoint.npz").read_bytes()
    monkeypatch.setattr(memory, "available_bytes", lambda backend: 2**20)
    status, line = one_line_error(
        capsys, "--resume", str(out / "checkpoint.npz"), "--iterations", "4", "--quiet"
    )
    assert status == 2 and "1.0 MiB available" in line
    assert (out / "checkpoint.npz").read_bytes() == before


def _bytes(text):
    """``"1.5 GiB"`` as a number of bytes."""
    value, unit = text.split()
    return float(value) * {"B": 1, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40}[unit]


@LINUX
def test_ulimit_v_is_memory_the_run_cannot_have(tmp_path):
    """A process limited by ``ulimit -v`` (RLIMIT_AS): the run (about 14 GiB) is refused
    with the room the limit leaves, less than the limit, not ended by a MemoryError."""
    limit = 4 * 2**30

    def limited():
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    one_thread = {k: "1" for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    r = subprocess.run(
        [sys.executable, "-m", "gcn_numpy.train", *TINY, "--chains", "200000", "--iterations", "1"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=limited,
        env=dict(os.environ, **one_thread),
    )
    line = assert_one_line_refusal(r, "need about", "--chains")
    needed, available = line.split("need about ")[1].split(" of memory, and this machine has ")
    # the room is printed to one decimal: 3.96 GiB reads "4.0 GiB"
    assert _bytes(available.split(" available")[0]) <= limit < _bytes(needed)


@LINUX
def test_the_estimate_bounds_the_measured_peak(tmp_path):
    """The estimate against the peak of what a run whose maps dominate (numpy backend, 4
    chains of 256 x 256 px) allocates, learning and outputs included: above it, and within
    2.5x. The peak is the one tracemalloc sees (NumPy reports its arrays' memory to it):
    the process's resident peak also holds one-time costs that vary with the environment
    (about 174 MB for any canvas in a fresh CI environment, 17 MB for a small run here)."""
    script = (
        "import json, sys, tracemalloc\n"
        "from gcn_numpy import data, memory, train\n"
        "args = sys.argv[1:]\n"
        "config = train.config_from_args(train.build_parser().parse_args(args))\n"
        "estimate = memory.training_bytes(config, data.training_shape(config))\n"
        "tracemalloc.start()\n"
        "assert train.main([*args, '--out', 'run']) == 0\n"
        "print(json.dumps([estimate, tracemalloc.get_traced_memory()[1]]))\n"
    )
    args = ["--preset", "texture", "--backend", "numpy", "--size", "32", "--synth-size", "256"]
    args += ["--chains", "4"]
    args += ["--langevin-steps", "1", "--iterations", "1", "--drift-steps", "0", "--quiet"]
    r = subprocess.run(
        [sys.executable, "-c", script, *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    estimate, measured = json.loads(r.stdout.strip().splitlines()[-1])
    assert measured <= estimate <= 2.5 * measured, (estimate, measured)


def test_the_estimate_grows_with_chains_and_canvas_and_reads_a_net_or_its_layers():
    layers = get_preset("texture").layer_objects()
    net = GenerativeConvNet(1, layers, backend="numba", dtype=np.float32)
    one = memory.pass_bytes(layers, (8, 1, 96, 96), "float32", "numba", "zero")
    assert memory.pass_bytes(net, (8, 1, 96, 96)) == one
    assert memory.pass_bytes(layers, (16, 1, 96, 96), "float32", "numba", "zero") == 2 * one
    assert memory.pass_bytes(layers, (8, 1, 192, 192), "float32", "numba", "zero") > 3.5 * one
    assert memory.pass_bytes(layers, (8, 1, 96, 96), "float64", "numba", "zero") > 1.5 * one
    # a sampler's N samples on a canvas: the chains, their noise and next state, one pass,
    # and on Numba as much again (at most 256 MiB) of earlier outputs kept for reuse
    live = 4 * 8 * 96 * 96 * 4 + one
    assert memory.langevin_bytes(net, (8, 1, 96, 96), backend="numpy") == live
    assert memory.langevin_bytes(net, (8, 1, 96, 96)) == 2 * live
    assert memory.langevin_bytes(net, (800, 1, 96, 96)) == 100 * live + 2**28
    assert memory.backend_bytes("numba") > memory.backend_bytes("numpy") > 0


def test_the_reuse_the_estimate_counts_is_numbas():
    from gcn_numpy.backends.numba import memory as numba_memory

    assert memory.REUSED_BYTES["numba"] == numba_memory.OUTPUTS_BYTES


@pytest.mark.parametrize(
    "preset, changes",
    [
        ("texture", {}),
        ("texture", {"synth_size": 40}),
        ("texture", {"boundary": "circular", "synth_scale": 1.3}),
        ("cd", {"n_images": 3}),
        ("object", {}),
    ],
)
def test_chains_shape_is_the_learners(preset, changes):
    config = get_preset(preset)
    config.backend, config.size = "numpy", 32
    for name, value in changes.items():
        setattr(config, name, value)
    images = np.random.default_rng(0).normal(size=(3, 1, 32, 32))
    assert chains_shape(config, images.shape) == Learner(config, images).chains.shape


def test_training_shape_is_what_the_load_returns(tmp_path):
    rng = np.random.default_rng(0)
    grey, rgb = tmp_path / "grey.png", tmp_path / "rgb.png"
    Image.fromarray(rng.integers(0, 256, (20, 30), dtype=np.uint8)).save(grey)
    Image.fromarray(rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)).save(rgb)
    for images in ([str(grey)], [str(grey), str(rgb)], [str(tmp_path)]):
        config = get_preset("texture")
        config.data, config.images, config.size = "files", images, 24
        assert data.training_shape(config) == data.load_training_images(config).shape
    for preset in ("texture", "cd"):
        config = get_preset(preset)
        assert data.training_shape(config) == data.load_training_images(config).shape


def test_available_memory_reads_the_cgroup_limit(tmp_path):
    """cgroup v2 and v1: the limit less the usage, reclaimable page cache not counted as
    used, the smallest room of the group and the groups above it."""
    proc = tmp_path / "cgroup"
    v2 = tmp_path / "v2"
    (v2 / "job" / "step").mkdir(parents=True)
    (v2 / "job" / "memory.max").write_text(f"{4 * 2**30}\n")
    (v2 / "job" / "memory.current").write_text(f"{3 * 2**30}\n")
    (v2 / "job" / "memory.stat").write_text(f"anon 1\ninactive_file {2**30}\n")
    (v2 / "job" / "step" / "memory.max").write_text("max\n")
    (v2 / "job" / "step" / "memory.current").write_text("5\n")
    proc.write_text("0::/job/step\n")
    assert memory._cgroup_room(str(v2), str(proc)) == 2 * 2**30
    v1 = tmp_path / "v1"
    (v1 / "memory" / "job").mkdir(parents=True)
    (v1 / "memory" / "job" / "memory.limit_in_bytes").write_text(f"{2**30}\n")
    (v1 / "memory" / "job" / "memory.usage_in_bytes").write_text(f"{2**29}\n")
    (v1 / "memory" / "memory.limit_in_bytes").write_text("9223372036854771712\n")
    (v1 / "memory" / "memory.usage_in_bytes").write_text("7\n")
    proc.write_text("12:cpu,cpuacct:/job\n7:memory:/job\n")
    assert memory._cgroup_room(str(v1), str(proc)) == 2**29
    proc.write_text("0::/\n")  # no limit anywhere
    assert memory._cgroup_room(str(tmp_path / "none"), str(proc)) is None


def test_help_says_how_memory_is_checked():
    text = " ".join(train.build_parser().format_help().split())
    assert "estimates the memory it needs" in text and "exit status 2" in text
    assert "lower --chains, --synth-size or --size" in text


# ------------------------------------------------------------------ flat images


def _save(tmp_path, name, pixels, mode=None):
    path = tmp_path / name
    Image.fromarray(np.asarray(pixels, dtype=np.uint8), mode).save(path)
    return path


@pytest.mark.parametrize(
    "name, pixels",
    [
        ("black-1x1.png", np.zeros((1, 1))),
        ("grey-1x1.png", np.full((1, 1), 128)),
        ("constant-2x2.png", np.full((2, 2), 77)),
        ("constant-colour.png", np.broadcast_to([200, 30, 90], (40, 40, 3))),
        ("one-grey-level.png", (np.arange(40 * 40).reshape(40, 40) % 5 == 0) + 100),
    ],
)
def test_a_flat_image_is_refused_before_learning(tmp_path, name, pixels):
    path = _save(tmp_path, name, pixels)
    out = tmp_path / "run"
    r = run_cli(*TINY, "--size", "64", "--image", str(path), "--out", str(out), cwd=tmp_path)
    assert_one_line_refusal(r, "nothing to learn", "below 1 of 0-255")
    assert sorted(os.listdir(out)) == [".lock"]  # no configuration, no checkpoint


def test_the_flatness_threshold_is_one_grey_level():
    rng = np.random.default_rng(0)
    flat = 100 + rng.choice([0.0, 1.0], size=(2, 3, 32, 32), p=[0.9, 0.1])  # std 0.3
    with pytest.raises(data.DataError, match="nothing to learn"):
        data.check_contrast(flat)
    varied = flat.copy()
    varied[1, 2] = 100 + 1.2 * rng.normal(size=(32, 32))  # one channel of one image
    assert data.check_contrast(varied) is not None


def test_a_2x2_image_is_upsampled_with_a_warning_and_ends_with_defined_numbers(tmp_path):
    path = _save(tmp_path, "two.png", [[0, 60], [120, 180]])
    out = tmp_path / "run"
    r = run_cli(
        *TINY,
        "--size",
        "64",
        "--iterations",
        "2",
        "--image",
        str(path),
        "--out",
        str(out),
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr
    assert r.stderr.count("\n") == 1 and "upsampled 32.0x" in r.stderr
    assert "nan" not in r.stdout and "n/a (samples nearly flat)" in r.stdout
    summary = strict_json(out / "summary.json")
    assert summary["frame_score"] is None
    assert summary["not_meaningful"] == {"frame_score": "samples nearly flat"}


# ------------------------------------------------------------------- the summary


def test_after_sigterm_and_resume_the_final_line_has_no_absurd_frame_score(tmp_path):
    out = tmp_path / "run"
    args = [*TINY, "--iterations", "8", "--checkpoint-every", "1", "--out", str(out)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "gcn_numpy.train", *args],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )

    def reached_three():
        try:
            return int(npz_arrays(out / "checkpoint.npz")["iteration"]) >= 3
        except (OSError, ValueError, KeyError):
            return False

    wait_for(reached_three, proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    r = run_cli("--resume", str(out / "checkpoint.npz"), "--quiet", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    line = r.stdout.splitlines()[0]
    assert "frame score n/a (samples nearly flat)" in line and "nan" not in line, line
    summary = strict_json(out / "summary.json")
    assert summary["iterations"] == 8 and summary["frame_score"] is None


def test_one_chain_on_a_canvas_without_interior(tmp_path):
    out = tmp_path / "run"
    one_chain = "--chains 1 --synth-size 16 --iterations 1".split()
    r = run_cli(*TINY, *one_chain, "--out", str(out), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    line = r.stdout.splitlines()[0]
    assert "sameness n/a (one chain)" in line and "frame score n/a (canvas 16x16" in line
    summary = strict_json(out / "summary.json")
    assert summary["sameness"] is None and summary["frame_score"] is None
    assert set(summary["not_meaningful"]) == {"sameness", "frame_score"}


def _texture(rng, shape, spread=40.0):
    return spread * rng.normal(size=shape)


@pytest.mark.parametrize(
    "samples, training, undefined",
    [
        (
            np.zeros((4, 1, 40, 40)),
            "texture",
            {"copying", "sameness", "spectrum_distance", "frame_score"},
        ),
        ("noise", "texture", {"frame_score"}),  # the first iterations' samples
        (
            "texture",
            np.full((1, 1, 32, 32), 5.0),
            {"copying", "frame_score", "spectrum_distance", "std_ratio"},
        ),
        (
            "texture",
            np.zeros((1, 3, 32, 32)),
            {"copying", "frame_score", "spectrum_distance", "std_ratio"},
        ),
        ("one", "texture", {"sameness"}),
        ("small", "texture", {"frame_score"}),
        ("texture", None, set()),
    ],
    ids=[
        "constant-samples",
        "nearly-flat",
        "flat-training",
        "zero-colour-training",
        "one-chain",
        "no-interior",
        "usual",
    ],
)
def test_the_summary_of_flat_samples_and_images_is_defined(samples, training, undefined):
    rng = np.random.default_rng(0)
    C = 1 if training is None or isinstance(training, str) else training.shape[1]
    shapes = {"noise": (3, C, 40, 40), "texture": (3, C, 40, 40), "one": (1, C, 40, 40)}
    shapes["small"] = (3, C, 16, 16)
    if isinstance(samples, str):
        samples = (1.0 if samples == "noise" else 40.0) * rng.normal(size=shapes[samples])
    if training is None or isinstance(training, str):
        training = _texture(rng, (1, C, 32, 32))
    with np.errstate(all="raise"):  # no division by zero anywhere
        summary = run_summary(samples, training)
    assert set(summary.get("not_meaningful", {})) == undefined
    for name in ("copying", "sameness", "frame_score", "spectrum_distance", "std_ratio"):
        value = summary[name]
        assert (value is None) == (name in undefined), name
        assert value is None or np.isfinite(value), name
    line = summary_line(summary)
    assert "nan" not in line and "inf" not in line
    for name in undefined & {"copying", "sameness", "frame_score"}:
        assert f"n/a ({summary['not_meaningful'][name]})" in line


def test_a_sample_below_the_flatness_fraction_makes_the_frame_score_undefined():
    rng = np.random.default_rng(1)
    training = _texture(rng, (1, 1, 32, 32))
    samples = _texture(rng, (4, 1, 40, 40))
    spread = samples[0, 0].std() / training.std()
    samples[0] *= 0.5 * FLAT_SAMPLES / spread  # one chain at half the threshold
    summary = run_summary(samples, training)
    assert summary["frame_score"] is None
    assert summary["not_meaningful"]["frame_score"] == "1 of 4 samples nearly flat"
    samples[0] *= 4  # twice the threshold
    assert run_summary(samples, training)["frame_score"] is not None


def test_a_canvas_larger_than_twice_the_training_images_is_summarised():
    rng = np.random.default_rng(2)
    summary = run_summary(_texture(rng, (2, 1, 80, 80)), _texture(rng, (1, 1, 32, 32)))
    assert 0 < summary["copying"] < 1 and "not_meaningful" not in summary


def test_summary_json_has_no_nan_and_names_the_reason(tmp_path):
    path = tmp_path / "summary.json"
    write_summary(
        path,
        {
            "copying": float("nan"),
            "recon_error": float("inf"),
            "frame_reference": (0.1, float("nan")),
            "iterations": 3,
        },
    )
    summary = strict_json(path)
    assert summary["copying"] is None and summary["recon_error"] is None
    assert summary["frame_reference"] == [0.1, None] and summary["iterations"] == 3
    assert set(summary["not_meaningful"]) == {"copying", "recon_error", "frame_reference"}
    line = summary_line(
        {"copying": float("nan"), "sameness": 0.5, "frame_score": 0.2, "recon_error": float("nan")}
    )
    assert line.count("n/a (not a finite number)") == 2 and "nan" not in line
