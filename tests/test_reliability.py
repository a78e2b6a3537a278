"""What a training run guarantees: real signals end it with a checkpoint that resumes bit
for bit, checkpoints stay the same size, damaged checkpoints and unwritable outputs get one
line and exit 2 without losing the previous checkpoint, diverging iterations are rolled
back, two runs cannot share a folder, and bad images are refused or converted."""

import errno
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import TINY_RUN, npz_arrays, read_csv, run_cli
from PIL import Image

from gcn_numpy import checkpoint, data, train
from gcn_numpy.learning import Learner

TINY = TINY_RUN  # on the default backend


def one_line_error(capsys, *args):
    """``main(args)``'s exit status and its single stderr line (asserting it is one)."""
    status = train.main(list(args))
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0], err
    return status, err[0]


def wait_for(predicate, proc, seconds=300):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if predicate():
            return
        if proc.poll() is not None:
            raise AssertionError(f"the run ended early: {proc.communicate()}")
        time.sleep(0.05)
    raise AssertionError("timed out")


# ------------------------------------------------------------------------- signals


def signal_args(backend):
    return [*TINY, "--backend", backend, "--iterations", "14", "--checkpoint-every", "2"]


@pytest.fixture(scope="module")
def full_runs(tmp_path_factory):
    """The uninterrupted run of each backend, made once for the signal tests (they only
    read it)."""
    runs = {}

    def get(backend):
        if backend not in runs:
            folder = tmp_path_factory.mktemp(f"full-{backend}")
            out = folder / "full"
            r = run_cli(*signal_args(backend), "--out", str(out), cwd=folder)
            assert r.returncode == 0, r.stderr
            runs[backend] = out
        return runs[backend]

    return get


@pytest.mark.parametrize(
    "backend, sig, status",
    [
        ("numpy", signal.SIGINT, 130),  # Ctrl-C
        ("numpy", signal.SIGTERM, 143),
        ("numpy", signal.SIGHUP, 129),
        ("numba", signal.SIGTERM, 143),
    ],
)
def test_a_signal_saves_a_checkpoint_that_resumes_bit_for_bit(
    tmp_path, full_runs, backend, sig, status
):
    args = signal_args(backend)
    full = full_runs(backend)

    part = tmp_path / "part"
    proc = subprocess.Popen(
        [sys.executable, "-m", "gcn_numpy.train", *args, "--out", str(part)],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    # a run can be watched: the pictures appear at the first checkpoint, not at the end
    wait_for(lambda: (part / "grid.png").exists() and (part / "curves.png").exists(), proc)
    assert (part / "synthesized" / "chain_00.png").exists()
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == status, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and signal.Signals(sig).name in lines[0] and "resume with" in lines[0]
    stopped = int(npz_arrays(part / "checkpoint.npz")["iteration"])
    assert 2 <= stopped < 14

    r = run_cli("--resume", str(part / "checkpoint.npz"), "--quiet", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    a, b = npz_arrays(full / "checkpoint.npz"), npz_arrays(part / "checkpoint.npz")
    assert set(a) == set(b)
    for key in a:
        if key != "metrics":
            assert np.array_equal(a[key], b[key]), key
    seconds = train.CSV_COLUMNS.index("seconds")
    assert np.array_equal(np.delete(a["metrics"], seconds, 1), np.delete(b["metrics"], seconds, 1))
    assert len(read_csv(part / "metrics.csv")) == 14
    frames = sorted(os.listdir(part / "frames"))
    assert frames == sorted(os.listdir(full / "frames"))
    for name in frames:
        with Image.open(part / "frames" / name) as x, Image.open(full / "frames" / name) as y:
            assert np.array_equal(np.asarray(x), np.asarray(y)), name
    summary = json.loads((part / "summary.json").read_text())
    assert summary["iterations"] == 14 and "frame_score" in summary


def test_checkpoint_size_does_not_grow_with_the_run(tmp_path):
    sizes = {}
    for n in (4, 40):
        out = tmp_path / str(n)
        r = run_cli(
            *TINY, "--backend", "numpy", "--iterations", str(n), "--out", str(out), cwd=tmp_path
        )
        assert r.returncode == 0, r.stderr
        sizes[n] = os.path.getsize(out / "checkpoint.npz")
        assert len(os.listdir(out / "frames")) == 1 + n // 10  # the frames live outside
    per_row = 8 * len(train.CSV_COLUMNS)
    history = 8 * Learner.HISTORY  # the gradient norms of the last iterations, bounded
    assert sizes[40] - sizes[4] <= 36 * per_row + history


# --------------------------------------------------------------- bad checkpoints


@pytest.fixture(scope="module")
def good_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("good") / "run"
    r = run_cli(*TINY, "--backend", "numpy", "--iterations", "2", "--out", str(out), cwd=out.parent)
    assert r.returncode == 0, r.stderr
    return out


def _damaged(good, tmp_path, change):
    state = npz_arrays(good / "checkpoint.npz")
    change(state)
    path = tmp_path / "damaged.npz"
    np.savez(path, **state)
    return path


def _other_net(state):
    config = json.loads(str(state["config"]))
    config["layers"][0]["channels"] += 1
    state["config"] = np.array(json.dumps(config))


@pytest.mark.parametrize(
    "change, problem",
    [
        (lambda s: s.pop("W1"), "lacks the entry 'W1'"),
        (lambda s: s.pop("rng"), "lacks the entry 'rng'"),
        (lambda s: s.update(chains=s["chains"][:, :, :-1]), "chains have shape"),
        (lambda s: s.update(W0=s["W0"][:, :, :2]), "weights[0]: expected W of shape"),
        (lambda s: s.update(chains=s["chains"].astype("U3")), "not numbers"),
        (lambda s: s.update(iteration=np.array("x")), "'iteration' is not a number"),
        (_other_net, "weights[0]: expected W of shape"),
        (lambda s: s.update(config=np.array("{")), "configuration that is not JSON"),
        (lambda s: s.update(obs=s["obs"][0]), "observed images of shape"),
    ],
)
def test_a_damaged_checkpoint_exits_2_naming_file_and_problem(
    good_run, tmp_path, capsys, change, problem
):
    path = _damaged(good_run, tmp_path, change)
    status, line = one_line_error(capsys, "--resume", str(path), "--out", str(tmp_path / "o"))
    assert status == 2 and str(path) in line and problem in line, line


@pytest.mark.parametrize(
    "content, problem",
    [
        (lambda b: b[: len(b) // 2], "truncated or damaged"),
        (lambda b: b"just some text", "not an npz archive"),
    ],
)
def test_a_truncated_or_foreign_file_exits_2(good_run, tmp_path, capsys, content, problem):
    path = tmp_path / "bad.npz"
    path.write_bytes(content((good_run / "checkpoint.npz").read_bytes()))
    status, line = one_line_error(capsys, "--resume", str(path), "--out", str(tmp_path / "o"))
    assert status == 2 and str(path) in line and problem in line, line


# -------------------------------------------------------------- unwritable outputs


def test_an_output_under_a_file_exits_2(tmp_path, capsys):
    (tmp_path / "some-file").write_text("x")
    out = tmp_path / "some-file" / "run"
    status, line = one_line_error(capsys, *TINY, "--backend", "numpy", "--out", str(out))
    assert status == 2 and str(tmp_path / "some-file") in line and "cannot create" in line


def test_an_unwritable_folder_exits_2(tmp_path, capsys, monkeypatch):
    """No permission (simulated: the tests may run as root, who has every permission)."""
    real_open = open

    def refusing(path, *args, **kwargs):
        if str(path).startswith(str(tmp_path / "locked")):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr("builtins.open", refusing)
    out = tmp_path / "locked"
    status, line = one_line_error(capsys, *TINY, "--backend", "numpy", "--out", str(out))
    assert status == 2 and str(out) in line and "Permission denied" in line


def test_a_full_disk_keeps_the_previous_checkpoint(tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    args = [*TINY, "--backend", "numpy", "--iterations", "2", "--out", str(out)]
    assert train.main(args) == 0
    capsys.readouterr()
    before = (out / "checkpoint.npz").read_bytes()
    real_savez = np.savez

    def disk_full(f, **arrays):
        real_savez(f, **{k: v for k, v in list(arrays.items())[:3]})  # a partial write ...
        raise OSError(errno.ENOSPC, "No space left on device")  # ... then the disk is full

    monkeypatch.setattr(checkpoint.np, "savez", disk_full)
    args = ["--resume", str(out / "checkpoint.npz"), "--iterations", "4", "--quiet"]
    status, line = one_line_error(capsys, *args)
    assert status == 2 and "checkpoint.npz" in line and "No space left on device" in line
    assert (out / "checkpoint.npz").read_bytes() == before
    assert not list(out.glob("*.tmp-*"))


# -------------------------------------------------------------------- divergence


def _faulty_gradient(monkeypatch, attempts):
    """Learner.gradient returns inf on the given attempts (1, 2, ... in this process)."""
    original, calls = Learner.gradient, [0]

    def faulty(self, *args):
        calls[0] += 1
        grads = original(self, *args)
        if calls[0] in attempts:
            return [(gW * np.inf, gb) for gW, gb in grads]
        return grads

    monkeypatch.setattr(Learner, "gradient", faulty)


def test_a_diverging_iteration_is_rolled_back_logged_and_learning_goes_on(
    tmp_path, capsys, monkeypatch
):
    _faulty_gradient(monkeypatch, {3})
    out = tmp_path / "run"
    args = [*TINY, "--backend", "numpy", "--iterations", "5", "--out", str(out)]
    assert train.main(args) == 0
    err = capsys.readouterr().err
    assert "iteration 3 rolled back: non-finite values" in err and "halved" in err
    table = read_csv(out / "metrics.csv")
    assert [(int(r["iteration"]), int(r["rollback"])) for r in table] == [
        (1, 0),
        (2, 0),
        (3, 1),
        (3, 0),
        (4, 0),
        (5, 0),
    ]
    lr = [float(r["lr"]) for r in table]
    assert lr[3] == lr[2] / 2 == lr[0] / 2
    assert json.loads((out / "summary.json").read_text())["rollbacks"] == 1


def test_three_rollbacks_in_a_row_stop_with_exit_1_and_the_last_good_checkpoint(
    tmp_path, capsys, monkeypatch
):
    _faulty_gradient(monkeypatch, {3, 4, 5})
    out = tmp_path / "run"
    args = [*TINY, "--backend", "numpy", "--iterations", "6", "--out", str(out)]
    assert train.main(args) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert "3 times in a row" in err[-1] and "checkpoint.npz" in err[-1]
    assert int(npz_arrays(out / "checkpoint.npz")["iteration"]) == 2


# ------------------------------------------------------------------ shared folder


def test_a_second_live_run_on_the_same_folder_is_refused(tmp_path):
    out = tmp_path / "run"
    args = [*TINY, "--backend", "numpy", "--iterations", "100000", "--checkpoint-every", "1"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "gcn_numpy.train", *args, "--out", str(out)],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        wait_for(lambda: (out / "checkpoint.npz").exists(), proc)
        second = run_cli(
            *TINY, "--backend", "numpy", "--iterations", "2", "--out", str(out), cwd=tmp_path
        )
        assert second.returncode == 2 and "another run" in second.stderr
        assert str(proc.pid) in second.stderr
    finally:
        proc.kill()  # SIGKILL: no clean-up, the lock file stays behind
        proc.communicate()
    assert (out / ".lock").exists()
    r = run_cli(
        "--resume", str(out / "checkpoint.npz"), "--iterations", "1", "--quiet", cwd=tmp_path
    )
    assert r.returncode == 0, r.stderr


# ------------------------------------------------------------------------ images


@pytest.fixture(scope="module")
def bad_images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("images")
    Image.new("1", (20000, 20000)).save(folder / "bomb.png")  # small on disk
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (40, 40), dtype=np.uint8)).save(folder / "ok.png")
    whole = (folder / "ok.png").read_bytes()
    (folder / "truncated.png").write_bytes(whole[: len(whole) // 2])
    (folder / "corrupt.png").write_bytes(whole[:40] + b"\0" * (len(whole) - 40))
    (folder / "damaged.png").write_bytes(whole[:-60] + b"\x17" * 60)  # image data spoiled
    return folder


@pytest.mark.parametrize(
    "name, problem",
    [
        ("bomb.png", "more pixels than this program reads"),
        ("truncated.png", "truncated or damaged"),
        ("corrupt.png", "not an image Pillow can read"),
        ("damaged.png", "truncated or damaged"),
    ],
)
def test_bad_images_exit_2_with_one_line(bad_images, tmp_path, capsys, name, problem):
    path = bad_images / name
    args = [*TINY, "--backend", "numpy", "--image", str(path), "--out", str(tmp_path / "o")]
    status, line = one_line_error(capsys, *args)
    assert status == 2 and str(path) in line and problem in line, line


@pytest.mark.parametrize("size", [64, 16])
def test_a_small_image_is_upsampled_with_a_warning(tmp_path, capsys, size):
    path = tmp_path / "tiny.png"
    Image.fromarray(np.arange(4, dtype=np.uint8).reshape(2, 2) * 60).save(path)
    args = [
        "--preset",
        "texture",
        "--backend",
        "numpy",
        "--chains",
        "2",
        "--langevin-steps",
        "1",
        "--drift-steps",
        "0",
        "--quiet",
    ]
    args += ["--iterations", "1", "--image", str(path), "--out", str(tmp_path / "o")]
    assert train.main([*args, "--size", str(size)]) == 0
    err = capsys.readouterr().err
    assert "warning" in err and f"upsampled {size / 2:.1f}x" in err and str(path) in err


@pytest.mark.parametrize(
    "make, channels",
    [
        (lambda a: Image.fromarray(a.astype(np.uint16) * 257), 1),  # 16-bit
        (lambda a: Image.fromarray(a).convert("P"), 1),  # a palette of greys
        (lambda a: Image.fromarray(np.stack([a, a[::-1], a.T], -1)).convert("P"), 3),
        (lambda a: Image.fromarray(np.stack([a, a, a, 255 - a], -1), "RGBA"), 3),
        (lambda a: Image.fromarray(np.stack([a, 255 - a], -1), "LA"), 1),
        (lambda a: Image.fromarray(a.astype(np.float32) / 255), 1),  # floats in [0, 1]
    ],
    ids=["16-bit", "grey-palette", "palette", "rgba", "la", "float"],
)
def test_image_modes_are_converted_as_documented(tmp_path, make, channels):
    a = np.random.default_rng(0).integers(0, 256, (32, 32)).astype(np.uint8)
    path = tmp_path / "image.tif"
    make(a).save(path)
    images = data.load_images([str(path)], 32)
    assert images.shape == (1, channels, 32, 32)
    if channels == 1:  # the grey values survive the conversion (within 8-bit rounding)
        assert np.max(np.abs(images[0, 0] - a)) <= 1.0
