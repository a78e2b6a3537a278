"""Algorithm 1, the release's update rule, layer growing, contrastive divergence and the
learner's checkpoint state, on tiny images with the float64 reference backend."""

import dataclasses

import numpy as np
import pytest
from conftest import assert_resumes_bit_for_bit, rel_err

from gcn_numpy import data, metrics
from gcn_numpy.drift import drift_test
from gcn_numpy.learning import DivergenceError, Learner, chains_shape
from gcn_numpy.model import Layer
from gcn_numpy.outputs import DRIFT_SEED, Run, run_drift
from gcn_numpy.presets import DEFAULT_PRESET, TrainConfig, get_preset
from gcn_numpy.rules import Adam, ReleaseRule


def tiny_config(**changes):
    base = TrainConfig(
        preset="tiny",
        size=16,
        layers=[
            dataclasses.asdict(l)
            for l in (Layer(8, 5, stride=2, padding=2), Layer(8, 3, padding=1))
        ],
        chains=6,
        langevin_steps=5,
        iterations=40,
        grow=False,
        lr=0.002,
        backend="numpy",
        dtype="float64",
    )
    return dataclasses.replace(base, **changes)


def texture(size=16):
    """A size x size corner of the gravel texture seen at 128 px: enough contrast to learn."""
    return data.prepare(data.load_images([data.texture_path("gravel")], 128)[:, :, :size, :size])[0]


def test_release_rule_clips_decays_and_doubles_bias_rate():
    rule = ReleaseRule(clip=20.0, weight_decay=0.1, bias_lr_mult=2.0, momentum=0.0)
    W, b = np.ones((2, 1, 1, 1)), np.ones(2)
    gW, gb = np.array([40.0, -10.0]).reshape(2, 1, 1, 1), np.array([1.0, 2.0])
    state = rule.init_state([(W, b)], np)
    ((W2, b2),) = rule.update([(W, b)], [(gW, gb)], state, 0.5, np)[0]
    # gW rescaled by 20/40: [20, -5]; minus decay 0.1 * 1; times lr 0.5
    assert np.allclose(W2.ravel(), 1 + 0.5 * (np.array([20.0, -5.0]) - 0.1))
    # gb unclipped (max 2 <= 20), no decay, rate 2 * 0.5
    assert np.allclose(b2, 1 + 1.0 * gb)


def test_release_rule_momentum_accumulates():
    rule = ReleaseRule(clip=1e9, weight_decay=0.0, bias_lr_mult=1.0, momentum=0.9)
    params = [(np.zeros(1), np.zeros(1))]
    grads = [(np.ones(1), np.ones(1))]
    state = rule.init_state(params, np)
    params, state = rule.update(params, grads, state, 1.0, np)
    params, state = rule.update(params, grads, state, 1.0, np)
    assert np.allclose(params[0][0], 1 + 1.9)


def test_adam_moves_along_the_gradient_sign():
    rule = Adam(weight_decay=0.0)
    params = [(np.zeros(3), np.zeros(1))]
    grads = [(np.array([5.0, -0.1, 0.0]), np.array([1.0]))]
    new, _ = rule.update(params, grads, rule.init_state(params, np), 0.01, np)
    assert np.allclose(new[0][0], [0.01, -0.01, 0.0], atol=1e-6)


def _plain_config(**changes):
    """A tiny configuration whose update is the bare ``w + lr g``: no clipping, no decay,
    one learning rate, weights large enough to give every layer a gradient."""
    return tiny_config(
        clip=1e9, weight_decay=0.0, bias_lr_mult=1.0, lr=0.01, init_std=0.2, **changes
    )


def _one_update(config, images):
    """The weights before and after one iteration of ``config``, and the learner."""
    learner = Learner(config, images)
    before = learner.net.weights
    learner.step()
    return learner, before, learner.net.weights


@pytest.mark.parametrize("top", ["sum", "linear"])
def test_one_iteration_is_algorithm1_normalised_per_layer_map(top):
    """w_l <- w_l + eta (H_obs / n_l(obs) - H_syn / n_l(syn)), n_l the positions of layer
    l's own output map (the release's rule) for each side's canvas, 1 for a linear top's
    filter. The layers' maps differ in size here (no padding), and with the sum top the
    chains' canvas is larger than the observed image."""
    layers = [dataclasses.asdict(l) for l in (Layer(8, 5, stride=2), Layer(8, 3))]
    config = _plain_config(layers=layers, top=top, synth_size=24 if top == "sum" else None)
    learner, before, after = _one_update(config, texture())
    chains = learner.net.to_numpy(learner.chains)
    sizes = {
        side: [h * w for _, h, w in learner.net.layer_shapes(n, n)] + [1] * (top == "linear")
        for side, n in (("obs", 16), ("syn", chains.shape[-1]))
    }
    assert sizes["obs"][0] != sizes["obs"][1]
    learner.net.set_weights(before)
    h_obs = learner.net.weight_gradient(learner.net.to_numpy(learner.obs))
    h_syn = learner.net.weight_gradient(chains)
    for l, ((W0, b0), (W1, b1), (go, bo), (gs, bs)) in enumerate(
        zip(before, after, h_obs, h_syn, strict=True)
    ):
        n_obs, n_syn = sizes["obs"][l], sizes["syn"][l]
        assert rel_err(W1 - W0, 0.01 * (go / n_obs - gs / n_syn)) <= 1e-10
        if l == len(config.layers):  # the linear top's bias: df/db = 1 on both sides
            assert np.array_equal(b1, b0)
        else:
            assert rel_err(b1 - b0, 0.01 * (bo / n_obs - bs / n_syn)) <= 1e-10


def _offset(window, image):
    """Where ``window`` (C, h, w) lies in ``image`` (C, H, W), or ``None``."""
    h, w = window.shape[1:]
    for y in range(image.shape[1] - h + 1):
        for x in range(image.shape[2] - w + 1):
            if np.array_equal(image[:, y : y + h, x : x + w], window):
                return y, x
    return None


def test_observed_window_takes_H_obs_from_a_moving_window_of_each_image():
    """With observed_window, each iteration's H_obs comes from a window of that fraction of
    the side at a random place in every training image, normalised by the window's own
    maps; the windows move from iteration to iteration."""
    images = np.concatenate([texture(16), texture(16)[:, :, ::-1]])
    config = _plain_config(observed_window=0.75, synth_size=20)
    learner = Learner(config, images)
    seen, draw = [], learner.observed_batch

    def recording():
        seen.append(draw())
        return seen[-1]

    learner.observed_batch = recording
    offsets = set()
    for _ in range(6):
        before = learner.net.weights
        learner.step()
        window = learner.net.to_numpy(seen[-1])
        assert window.shape == (2, 1, 12, 12)
        places = [_offset(window[i], images[i]) for i in range(2)]
        assert None not in places
        offsets.update(places)
        after, chains = learner.net.weights, learner.net.to_numpy(learner.chains)
        learner.net.set_weights(before)
        h_obs = learner.net.weight_gradient(window)
        h_syn = learner.net.weight_gradient(chains)
        learner.net.set_weights(after)
        n_obs = [h * w for _, h, w in learner.net.layer_shapes(12, 12)]
        n_syn = [h * w for _, h, w in learner.net.layer_shapes(20, 20)]
        for l, ((W0, _), (W1, _), (go, _), (gs, _)) in enumerate(
            zip(before, after, h_obs, h_syn, strict=True)
        ):
            assert rel_err(W1 - W0, 0.01 * (go / n_obs[l] - gs / n_syn[l])) <= 1e-10
    assert len(offsets) > 3  # the windows move


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"observed_window": 0.0}, "fraction"),
        ({"observed_window": 1.5}, "fraction"),
        ({"observed_window": True}, "fraction"),
        ({"observed_window": 0.5, "mode": "cd"}, "maximum likelihood"),
    ],
)
def test_observed_window_is_checked(changes, message):
    with pytest.raises(ValueError, match=message):
        Learner(tiny_config(**changes), texture())


@pytest.mark.parametrize("tolerance", [0, 2])
def test_clean_observed_positions_leave_the_padding_out_of_H_obs(tolerance):
    """With observed_positions="clean", H_obs sums only the top positions whose receptive
    field lies inside the image (or leaves it by at most ``positions_tolerance`` pixels);
    the chains keep every position of their torus."""
    config = _plain_config(
        boundary="circular",
        observed_positions="clean",
        synth_size=24,
        positions_tolerance=tolerance,
    )
    learner, before, after = _one_update(config, texture())
    net = learner.net
    chains = net.to_numpy(learner.chains)
    clean = net.clean_positions(16, 16, tolerance)[-1]
    assert 0 < clean.sum() < clean.size
    if tolerance:  # more positions than the clean ones, fewer than all
        assert clean.sum() > net.clean_positions(16, 16)[-1].sum()
    net.set_weights(before)
    obs = net.forward_backward(learner.obs, need_grads=True, B_top=clean[None, None])
    syn = net.forward_backward(net.check_images(chains), need_grads=True)
    share = clean.sum() / clean.size
    n_obs = [h * w * share for _, h, w in net.layer_shapes(16, 16)]
    n_syn = [h * w for _, h, w in net.layer_shapes(24, 24)]
    for l, ((W0, _), (W1, _), (go, _), (gs, _)) in enumerate(
        zip(before, after, obs["grads"], syn["grads"], strict=True)
    ):
        expected = 0.01 * (go / n_obs[l] - gs / (len(chains) * n_syn[l]))
        assert rel_err(W1 - W0, expected) <= 1e-10


def test_circular_canvas_is_rounded_to_the_strides():
    config = tiny_config(boundary="circular", synth_scale=1.4)  # 16 * 1.4 = 22.4
    learner = Learner(config, texture())
    assert learner.chains.shape[2:] == (22, 22)
    config = tiny_config(boundary="circular", synth_scale=1.5)  # 24
    assert Learner(config, texture()).chains.shape[2:] == (24, 24)
    with pytest.raises(ValueError, match="divisible by the stride"):
        Learner(tiny_config(boundary="circular", synth_size=25), texture())


def test_release_rule_signed_clip_tests_the_largest_value_not_the_largest_magnitude():
    rule = ReleaseRule(clip=1.0, weight_decay=0.0, bias_lr_mult=1.0, clip_mode="signed")
    params = [(np.zeros(3), np.zeros(1))]
    state = rule.init_state(params, np)
    g_neg = [(np.array([0.5, -4.0, 0.2]), np.array([-3.0]))]  # max 0.5: no rescale
    new, _ = rule.update(params, g_neg, state, 1.0, np)
    assert np.allclose(new[0][0], [0.5, -4.0, 0.2]) and np.allclose(new[0][1], [-3.0])
    g_pos = [(np.array([2.0, -4.0, 0.2]), np.array([0.5]))]  # max 2: halved
    new, _ = rule.update(params, g_pos, state, 1.0, np)
    assert np.allclose(new[0][0], [1.0, -2.0, 0.1])
    absolute = ReleaseRule(clip=1.0, weight_decay=0.0, bias_lr_mult=1.0)
    new, _ = absolute.update(params, g_neg, state, 1.0, np)
    assert np.allclose(new[0][0], [0.125, -1.0, 0.05])


def test_tiny_learning_run_moves_samples_toward_the_texture():
    images = texture()
    learner = Learner(tiny_config(iterations=40, lr=0.01), images)
    gaps, first = [], None
    for _ in range(learner.total_iterations):
        m = learner.step()
        gaps.append(abs(m["f_obs"] - m["f_syn"]) / abs(m["f_obs"]))
        if first is None:
            first = learner.net.to_numpy(learner.chains)
    last = learner.net.to_numpy(learner.chains)
    # the chains catch up with the data: the relative score gap shrinks ...
    assert np.mean(gaps[-10:]) < 0.3 * np.mean(gaps[:5])
    # ... and the samples' statistics move toward the training image's
    s0, s1 = metrics.texture_stats(first, images), metrics.texture_stats(last, images)
    assert abs(s1["std_samples"] - s1["std_training"]) < 0.5 * abs(
        s0["std_samples"] - s0["std_training"]
    )
    assert s1["spectrum_distance"] < s0["spectrum_distance"]


def test_layers_grow_one_per_stage_and_learning_rate_halves():
    config = tiny_config(grow=True, iterations=3, lr=0.004)
    learner = Learner(config, texture())
    assert len(learner.net.layers) == 1 and learner.total_iterations == 6
    for _ in range(3):
        learner.step()
    first_layer = learner.net.weights[0]
    learner.step()
    assert len(learner.net.layers) == 2 and learner.lr == pytest.approx(0.002)
    # the first layer kept its filters and learned on by one more update
    assert learner.net.weights[0][0].shape == first_layer[0].shape
    assert 0 < np.abs(learner.net.weights[0][0] - first_layer[0]).max() < 0.1


def test_linear_top_grows_with_a_new_top_filter():
    config = tiny_config(grow=True, iterations=2, top="linear", chains=4)
    learner = Learner(config, texture())
    shapes = [[w.shape for w, _ in learner.net.weights]]
    for _ in range(4):
        learner.step()
    shapes.append([w.shape for w, _ in learner.net.weights])
    assert shapes[0] == [(8, 1, 5, 5), (1, 8, 8, 8)]
    assert shapes[1] == [(8, 1, 5, 5), (8, 8, 3, 3), (1, 8, 8, 8)]


def test_contrastive_divergence_starts_at_the_data_and_tracks_reconstruction():
    images = data.prepare(data.texture_crops(3, 16))[0]
    config = tiny_config(
        mode="cd", langevin_steps=1, step_size=0.5, momentum=0.9, clip=1.0, iterations=30
    )
    learner = Learner(config, images)
    assert learner.chains.shape == images.shape
    errors = [learner.step()["recon_error"] for _ in range(30)]
    assert errors[0] > 0
    assert np.mean(errors[-5:]) < np.mean(errors[:5])
    # the reconstruction is the auto-encoding sigma^2 B(delta(I)) of the observed images
    recon = learner.reconstruct()
    assert np.array_equal(recon, config.sigma**2 * learner.net.top_down(images)[1])
    other = images[:, :, ::-1]
    assert np.array_equal(learner.reconstruct(other), learner.net.top_down(other)[1])


def _inject(learner, faults):
    """Make the gradient of the attempts numbered in ``faults`` (1, 2, ... counting every
    call) blow up: ``"inf"`` or a factor."""
    gradient, calls = learner.gradient, [0]

    def faulty(*args):
        calls[0] += 1
        grads = gradient(*args)
        fault = faults.get(calls[0])
        if fault is None:
            return grads
        factor = np.inf if fault == "inf" else fault
        return [(gW * factor, gb * factor) for gW, gb in grads]

    learner.gradient = faulty


def _state(learner):
    return {k: v for k, v in learner.state_dict().items() if k not in ("rng", "rollbacks")}


UNCLIPPED = float("inf")  # the release's rule without its clip: a step as large as g


@pytest.mark.parametrize("fault", ["inf", 1e6])
def test_a_diverging_iteration_is_rolled_back_with_half_the_learning_rate(fault):
    """Non-finite values, or (under a rule whose step is not bounded) a gradient norm above
    100 x its recent median: the iteration is undone, the learning rate halved, new noise
    drawn, and learning goes on."""
    config = tiny_config(lr=0.002, iterations=Learner.MIN_HISTORY + 10, clip=UNCLIPPED)
    learner = Learner(config, texture())
    at = Learner.MIN_HISTORY + 2  # a spike is judged only after the stage's first iterations
    _inject(learner, {at: fault})
    for _ in range(at - 1):
        assert learner.step()["rollback"] == ""
    good = _state(learner)
    rng_before = learner.rng.bit_generator.state
    m = learner.step()
    assert m["rollback"] and learner.iteration == at - 1 and learner.rollbacks == 1
    assert ("non-finite" in m["rollback"]) == (fault == "inf")
    after = _state(learner)
    for key in good:
        if key != "lr":
            assert np.array_equal(good[key], after[key]), key
    assert learner.lr == 0.001
    assert learner.rng.bit_generator.state != rng_before  # no replay: the noise moves on
    m = learner.step()
    assert m["rollback"] == "" and m["lr"] == 0.001 and learner.iteration == at


def test_rollbacks_are_reproducible():
    runs = []
    for _ in range(2):
        learner = Learner(tiny_config(iterations=110, clip=UNCLIPPED), texture())
        _inject(learner, {4: "inf", 105: 1e6})
        for _ in range(108):
            learner.step()
        assert learner.rollbacks == 2
        runs.append(learner.state_dict())
    for key in runs[0]:
        assert np.array_equal(runs[0][key], runs[1][key]), key


@pytest.mark.parametrize("changes", [{}, {"optimizer": "adam"}], ids=["release clip", "adam"])
def test_a_gradient_spike_does_not_stop_a_rule_whose_step_is_bounded(changes):
    """Under the release's clip (max |g| <= 20) or Adam, a gradient a million times its
    median moves no weight by more than a bounded step: the iteration is kept, the
    learning rate stays, and the weights move by at most lr x clip."""
    config = tiny_config(iterations=Learner.MIN_HISTORY + 10, **changes)
    learner = Learner(config, texture())
    at = Learner.MIN_HISTORY + 2
    _inject(learner, {at: 1e6, at + 1: 1e6, at + 2: 1e6})
    for _ in range(at - 1):
        learner.step()
    before = [W.copy() for W, _ in learner.net.weights]
    for _ in range(3):
        assert learner.step()["rollback"] == ""
    assert learner.rollbacks == 0 and learner.lr == config.lr
    bound = 3 * config.lr * (config.clip if "optimizer" not in changes else 4.0)
    for W0, (W1, _) in zip(before, learner.net.weights, strict=True):
        assert 0 < np.abs(W1 - W0).max() <= bound * 1.01


@pytest.mark.parametrize("changes", [{}, {"optimizer": "adam"}], ids=["release clip", "adam"])
def test_chains_that_run_away_are_rolled_back_under_a_bounded_step(changes):
    """Finite chains far beyond the data (the release's object recipe with 4 chains ran to a
    pixel std of 1.5e8 with every value finite) are a divergence under any rule: the
    iteration is undone and the rate halved; chains within the bound are kept."""
    learner = Learner(tiny_config(lr=0.002, **changes), texture())
    synthesize, calls = learner.synthesize, [0]
    bound = Learner.RUNAWAY * np.abs(learner.obs).max()

    def running_away():
        calls[0] += 1
        syn = synthesize()
        scale = {4: 0.9, 5: 1.1}.get(calls[0])  # just inside, then just outside the bound
        return syn if scale is None else syn * (scale * bound / np.abs(syn).max())

    learner.synthesize = running_away
    for _ in range(3):
        assert learner.step()["rollback"] == ""
    m = learner.step()
    assert m["rollback"] == "" and learner.iteration == 4  # 0.9 x the bound: kept
    good = _state(learner)
    m = learner.step()
    assert "ran away" in m["rollback"] and learner.iteration == 4 and learner.lr == 0.001
    after = _state(learner)
    for key in good:
        if key != "lr":
            assert np.array_equal(good[key], after[key]), key


def test_three_rollbacks_in_a_row_stop_with_the_last_good_state():
    learner = Learner(tiny_config(step_size=1e150), texture())
    before = learner.state_dict()
    assert learner.step()["rollback"] and learner.step()["rollback"]
    with pytest.raises(DivergenceError, match="iteration 1, 3 times in a row"):
        learner.step()
    after = learner.state_dict()
    for key in before:
        if key not in ("rng", "lr", "rollbacks"):
            assert np.array_equal(before[key], after[key]), key


def test_a_new_stage_restores_its_learning_rate_and_restarts_the_history():
    config = tiny_config(grow=True, iterations=6, lr=0.004, lr_decay_per_layer=0.5)
    learner = Learner(config, texture())
    _inject(learner, {3: "inf"})
    while learner.iteration < 6:
        learner.step()
    assert learner.lr == 0.002 and len(learner.grad_history) == 6
    learner.step()  # the first iteration of stage 2
    assert len(learner.net.layers) == 2 and learner.lr == 0.002
    assert len(learner.grad_history) == 1


@pytest.mark.parametrize("optimizer", ["release", "adam"])
def test_state_dict_round_trip_continues_bit_for_bit(optimizer):
    config = tiny_config(optimizer=optimizer, grow=True, iterations=2)
    assert_resumes_bit_for_bit(config, texture(), 3, 5)


def test_mismatched_state_is_rejected():
    a = Learner(tiny_config(), texture())
    state = a.state_dict()
    other = Learner(tiny_config(chains=3), texture())
    with pytest.raises(ValueError, match="chains"):
        other.load_state_dict(state)
    del state["W0"]
    with pytest.raises(ValueError, match="W0"):
        a.load_state_dict(state)


def test_the_convergent_preset_is_the_paper_preset_at_cpu_size():
    """``texture-convergent`` changes only the size, the chains, their canvas (128 px at
    the 112 px training size), the iterations a stage, the crop's scale, the restart at
    each stage and where rejuvenated chains start (the tempered start and zero in turn,
    from stage 2); everything else is texture-paper's."""
    convergent, paper = get_preset("texture-convergent"), get_preset("texture-paper")
    changed = {
        k for k, v in convergent.to_dict().items() if k != "preset" and v != getattr(paper, k)
    }
    assert changed == {
        "size",
        "chains",
        "synth_scale",
        "iterations",
        "texture_scale",
        "restart_chains",
        "rejuvenate_from",
        "rejuvenate_tempered_stage",
    }
    assert (convergent.size, convergent.chains, convergent.iterations) == (112, 4, 150)
    assert chains_shape(convergent, (1, 1, 112, 112)) == (4, 1, 128 + 66, 128 + 66)
    assert convergent.restart_chains and convergent.texture_scale == 1.0
    assert convergent.anneal == 0.5 and convergent.rejuvenate == 10 and convergent.grow
    assert (convergent.rejuvenate_from, convergent.rejuvenate_tempered_stage) == ("alternate", 2)


def test_the_default_preset_is_the_convergent_one_with_one_larger_chain():
    """``texture-one-chain`` (what ``python -m gcn_numpy.train`` runs) changes only the
    chains: one on a canvas 1.5x the training size instead of four on one 8/7 of it,
    restarted every 40th iteration instead of every 10th (a chain lives as long between
    restarts)."""
    default, convergent = get_preset(DEFAULT_PRESET), get_preset("texture-convergent")
    changed = {
        k for k, v in default.to_dict().items() if k != "preset" and v != getattr(convergent, k)
    }
    assert DEFAULT_PRESET == "texture-one-chain"
    assert changed == {"chains", "synth_scale", "rejuvenate"}
    assert (default.chains, default.synth_scale, default.rejuvenate) == (1, 1.5, 40)
    assert default.rejuvenate // default.chains == convergent.rejuvenate * convergent.chains


def test_presets_exist_with_the_release_numbers():
    paper = get_preset("texture-paper")
    assert (paper.size, paper.chains, paper.langevin_steps, paper.step_size) == (224, 16, 10, 0.3)
    assert [l["channels"] for l in paper.layers] == [100, 64, 30]
    assert paper.grow and paper.lr == 0.0005 and paper.clip == 20.0
    obj = get_preset("object-paper")
    assert obj.top == "linear" and obj.langevin_steps == 30 and obj.lr == 0.004
    assert obj.lr_size == 224 and obj.learning_rate() == 0.004  # the release's own size
    cd = get_preset("cd-paper")
    assert cd.mode == "cd" and cd.langevin_steps == 1 and cd.momentum == 0.9
    assert cd.step_size == 0.5 and not cd.grow and cd.iterations == 1200 and cd.lr == 0.0001
    assert get_preset("cd").lr == 0.0005
    with pytest.raises(ValueError, match="unknown preset"):
        get_preset("faces")


def test_a_rate_given_for_one_image_side_scales_with_the_side():
    """object-paper's 0.004 is the release's rate at 224 px; at 64 px every stage learns at
    0.004 x 64 / 224; a rate given on the command line is used as given."""
    from gcn_numpy.train import build_parser, config_from_args

    config = get_preset("object-paper")
    config.size, config.iterations, config.layers = 32, 2, config.layers[:2]
    learner = Learner(config, np.random.default_rng(0).normal(0, 40, (2, 3, 32, 32)))
    assert learner.lr == pytest.approx(0.004 * 32 / 224)
    for _ in range(3):  # into stage 2: no halving (the release)
        learner.step()
    assert len(learner.net.layers) == 2 and learner.lr == pytest.approx(0.004 * 32 / 224)
    args = ["--preset", "object-paper", "--size", "64"]
    assert config_from_args(build_parser().parse_args(args)).learning_rate() == pytest.approx(
        0.004 * 64 / 224
    )
    given = config_from_args(build_parser().parse_args([*args, "--lr", "0.004"]))
    assert given.learning_rate() == 0.004


def test_the_runs_drift_test_runs_the_f_its_chains_learned_with(tmp_path):
    """A run whose synthesized side of H summed the clean top positions (within
    ``positions_tolerance`` pixels) ends with the drift test of that f, not of every
    position's."""
    config = tiny_config(
        synthesized_positions="clean", positions_tolerance=2, drift_steps=10, chains=2
    )
    learner = Learner(config, texture())
    learner.step()
    run = Run(config, str(tmp_path), np.array([100.0]))
    drift = run_drift(run, learner)
    net, chains = learner.net, learner.net.to_numpy(learner.chains)
    mask = net.clean_positions(*chains.shape[2:], 2)[-1]
    assert 0 < mask.sum() < mask.size
    for B_top, same in ((mask[None, None], True), (None, False)):
        records, _ = drift_test(
            net,
            chains,
            net.to_numpy(learner.obs),
            steps=10,
            step_size=config.step_size,
            sigma=config.sigma,
            rng=np.random.SeedSequence([config.seed, learner.iteration, DRIFT_SEED]),
            mean=run.mean,
            margin=learner.margin,
            B_top=B_top,
        )
        numbers = [(r["energy"], r["mean"], r["std"]) for r in records]
        assert (numbers == [(r["energy"], r["mean"], r["std"]) for r in drift["records"]]) == same
