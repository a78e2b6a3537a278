"""What a run does over time besides Algorithm 1's lines: the annealed learning rate, chains
started again at zero (in turn, or at each new stage), the margin the samples leave out,
and layer growing across a rolled-back iteration."""

import copy
from dataclasses import replace

import numpy as np
import pytest
from conftest import assert_resumes_bit_for_bit
from test_learning import _inject, texture, tiny_config

from gcn_numpy.learning import Learner, receptive_field
from gcn_numpy.model import GenerativeConvNet, Layer
from gcn_numpy.sampling import TEMPER_START, TEMPER_STEPS, temperatures, tempered_chains


def test_anneal_lowers_the_rate_linearly_to_zero_over_the_last_fraction():
    config = tiny_config(iterations=10, anneal=0.5, lr=0.002)
    learner = Learner(config, texture())
    rates = [learner.step()["lr"] for _ in range(10)]
    expected = [0.002] * 6 + [0.002 * k / 5 for k in (4, 3, 2, 1)]
    assert np.allclose(rates, expected, rtol=0, atol=1e-15)


def test_anneal_covers_the_final_stage_of_a_grown_run_only():
    config = tiny_config(iterations=4, anneal=0.5, grow=True, lr=0.004, lr_decay_per_layer=0.5)
    learner = Learner(config, texture())
    rates = [learner.step()["lr"] for _ in range(8)]
    assert np.allclose(rates, [0.004] * 4 + [0.002, 0.002, 0.002, 0.001])


def test_a_rollback_during_the_anneal_halves_the_stage_rate_not_the_annealed_one():
    config = tiny_config(iterations=10, anneal=0.5, lr=0.002)
    learner = Learner(config, texture())
    _inject(learner, {8: "inf"})
    rates = [learner.step()["lr"] for _ in range(11)]
    # the 8th attempt (iteration 7, factor 3/5) is undone; it is retried at half the rate
    assert np.allclose(rates[7:], [0.002 * 0.6, 0.001 * 0.6, 0.001 * 0.4, 0.001 * 0.2])


def restarts_at_zero(learner):
    """{iteration: the chains that start again at zero there} over the learner's run (its
    chains must be non-zero everywhere)."""
    restarted = {}
    for t in range(learner.total_iterations):
        learner.iteration = t
        start = learner._chain_starts()
        zero = [i for i in range(len(start)) if not start[i].any()]
        if zero:
            restarted[t] = zero
    return restarted


def test_rejuvenation_starts_one_chain_in_turn_at_zero_every_R_iterations():
    config = tiny_config(iterations=20, rejuvenate=2, chains=3, rejuvenate_stop=0.25)
    learner = Learner(config, texture())
    learner.chains = learner.chains + 1.0
    # every second iteration, chains 0, 1, 2, 0, ... in turn; none in the last 5
    assert restarts_at_zero(learner) == {2: [0], 4: [1], 6: [2], 8: [0], 10: [1], 12: [2], 14: [0]}
    assert learner.chains.min() == 1.0  # the learner's own chains are not touched


def test_kept_chains_are_never_rejuvenated_the_others_take_turns():
    """``rejuvenate_keep = K``: chains 0 .. K-1 persist, the restarts go to the rest in turn
    (with "alternate", tempered and at zero in turn, so here all to the one other chain)."""
    config = tiny_config(iterations=20, rejuvenate=2, chains=3, rejuvenate_keep=1,
                         rejuvenate_stop=0.25)  # fmt: skip
    learner = Learner(config, texture())
    learner.chains = learner.chains + 1.0
    assert restarts_at_zero(learner) == {2: [1], 4: [2], 6: [1], 8: [2], 10: [1], 12: [2], 14: [1]}
    alternate = Learner(replace(config, chains=2, rejuvenate_from="alternate"), texture())
    alternate.chains = alternate.chains + 1.0
    for t, tempered in ((2, False), (4, True), (6, False), (8, True)):
        alternate.iteration = t
        start = alternate._chain_starts()
        assert np.array_equal(start[0], alternate.chains[0])  # the kept chain, as it is
        assert (start[1].std() > 0) == tempered and not (start[1] == 1.0).all()
    for keep in (3, -1):
        with pytest.raises(ValueError, match="rejuvenate_keep must be"):
            tiny_config(chains=3, rejuvenate_keep=keep)
    assert_resumes_bit_for_bit(config, texture(), 3, 8)


def test_a_tempered_restart_starts_every_chain_from_the_tempered_start_once():
    """When ``tempered_restart`` of the final stage is left, every chain starts again from
    the sampling command's tempered start from zero (the same draws from the learner's
    generator), once; the other iterations start from the chains as they are."""
    config = tiny_config(iterations=8, tempered_restart=0.25, chains=2)
    learner = Learner(config, texture())
    learner.chains = learner.chains + 1.0
    assert learner._tempered_restart_iteration() == 6
    for t in range(8):
        learner.iteration = t
        if t == 6:
            rng = copy.deepcopy(learner.rng)
            start = learner._chain_starts()
            temps = temperatures(TEMPER_STEPS, TEMPER_START)
            zero = np.zeros_like(learner.chains)
            expected = tempered_chains(learner.net, zero, temps, 2 * config.step_size,
                                       config.sigma, rng)  # fmt: skip
            assert np.array_equal(start, expected) and start.std() > 0
        else:
            assert learner._chain_starts() is learner.chains
    assert learner.chains.min() == 1.0  # the learner's own chains are not touched
    with pytest.raises(ValueError, match="tempered_restart must be a fraction"):
        tiny_config(tempered_restart=1.5)


def tempered_start_of(learner, k, rng):
    """What the tempered start of one chain from zero gives chain ``k``'s slot, drawn from
    ``rng`` (a copy of the learner's generator), with the configuration's steps and first
    temperature."""
    temps = temperatures(learner.config.temper_steps, learner.config.temper_start)
    zero = np.zeros_like(learner.chains[k : k + 1])
    step = 2 * learner.config.step_size
    return tempered_chains(learner.net, zero, temps, step, learner.config.sigma, rng)


def test_rejuvenated_chains_may_start_from_the_tempered_start():
    """``rejuvenate_from="tempered"``: the chain whose turn it is starts from the tempered
    start of one chain from zero (the learner's generator), the others as they are."""
    config = tiny_config(iterations=20, rejuvenate=2, chains=3, rejuvenate_from="tempered")
    learner = Learner(config, texture())
    learner.chains = learner.chains + 1.0
    learner.iteration = 4  # chain 1's turn
    rng = copy.deepcopy(learner.rng)
    start = learner._chain_starts()
    expected = tempered_start_of(learner, 1, rng)
    assert np.array_equal(start[1:2], expected) and start[1].std() > 0
    assert np.array_equal(start[[0, 2]], learner.chains[[0, 2]])
    assert_resumes_bit_for_bit(config, texture(), 3, 8)


@pytest.mark.parametrize("steps, hottest", [(7, 30.0), (1, 1.0), (200, 1000.0)])
def test_the_learnings_tempered_start_is_the_configured_one(steps, hottest):
    """``temper_steps`` and ``temper_start`` set the learning's tempered start, for a
    rejuvenated chain and for the tempered restart of every chain; the defaults are the
    sampling command's."""
    assert (tiny_config().temper_steps, tiny_config().temper_start) == (TEMPER_STEPS, TEMPER_START)
    config = tiny_config(iterations=20, rejuvenate=2, chains=3, rejuvenate_from="tempered",
                         tempered_restart=0.1, temper_steps=steps,
                         temper_start=hottest)  # fmt: skip
    learner = Learner(config, texture())
    learner.chains = learner.chains + 1.0
    learner.iteration = 4  # chain 1's turn
    rng = copy.deepcopy(learner.rng)
    start = learner._chain_starts()
    assert np.array_equal(start[1:2], tempered_start_of(learner, 1, rng))
    default = Learner(replace(config, temper_steps=TEMPER_STEPS, temper_start=TEMPER_START),
                      texture())  # fmt: skip
    default.chains, default.iteration = learner.chains, 4
    assert not np.array_equal(default._chain_starts()[1], start[1])
    learner.iteration = 18  # the tempered restart of every chain
    rng = copy.deepcopy(learner.rng)
    temps = temperatures(steps, hottest)
    zero = np.zeros_like(learner.chains)
    expected = tempered_chains(learner.net, zero, temps, 2 * config.step_size, config.sigma, rng)
    assert np.array_equal(learner._chain_starts(), expected)


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("temper_steps", 0, "temper_steps must be an integer >= 1, got 0"),
        ("temper_steps", 2.5, "temper_steps must be an integer >= 1"),
        ("temper_start", 0.5, "temper_start must be a temperature >= 1, got 0.5"),
        ("temper_start", float("nan"), "temper_start must be a temperature >= 1"),
        ("temper_start", True, "temper_start must be a temperature >= 1"),
    ],
)
def test_a_bad_tempered_start_is_refused(field, value, message):
    with pytest.raises(ValueError, match=message):
        tiny_config(**{field: value})


def test_alternate_rejuvenation_takes_tempered_and_zero_in_turn():
    """``rejuvenate_from="alternate"``: the restart at iteration jR starts from the
    tempered start for even j and at zero for odd j, the other chains as they are; before
    ``rejuvenate_tempered_stage`` every restart is at zero."""
    config = tiny_config(iterations=20, rejuvenate=2, chains=3, rejuvenate_from="alternate")
    learner = Learner(config, texture())
    learner.chains = learner.chains + 1.0
    learner.iteration = 4  # j = 2: chain 1's turn, tempered
    rng = copy.deepcopy(learner.rng)
    start = learner._chain_starts()
    expected = tempered_start_of(learner, 1, rng)
    assert np.array_equal(start[1:2], expected) and start[1].std() > 0
    assert np.array_equal(start[[0, 2]], learner.chains[[0, 2]])
    learner.iteration = 6  # j = 3: chain 2's turn, at zero
    rng_before = copy.deepcopy(learner.rng)
    start = learner._chain_starts()
    assert not start[2].any() and np.array_equal(start[:2], learner.chains[:2])
    assert learner.rng.bit_generator.state == rng_before.bit_generator.state  # no draw
    learner.iteration = 8  # j = 4: chain 0's turn, tempered again
    assert learner._chain_starts()[0].std() > 0
    gated_config = replace(config, grow=True, iterations=4, rejuvenate_tempered_stage=2)
    gated = Learner(gated_config, texture())
    gated.chains = gated.chains + 1.0
    gated.iteration = 4  # stage 1 of a grown run, j = 2: at zero, not tempered
    assert not gated._chain_starts()[1].any()
    assert_resumes_bit_for_bit(config, texture(), 3, 8)


def test_tempered_rejuvenation_waits_for_its_stage():
    """``rejuvenate_tempered_stage=2``: a grown run's rejuvenated chain starts at zero in
    stage 1 and from the tempered start from stage 2 on; without growing, stage 2 never
    comes."""
    config = tiny_config(
        iterations=4,
        grow=True,
        rejuvenate=2,
        chains=3,
        rejuvenate_from="tempered",
        rejuvenate_tempered_stage=2,
    )
    learner = Learner(config, texture())
    learner.chains = learner.chains + 1.0
    learner.iteration = 2  # stage 1, chain 0's turn
    start = learner._chain_starts()
    assert not start[0].any() and np.array_equal(start[1:], learner.chains[1:])
    for _ in range(5):  # into stage 2: iteration 5 done, the net has two layers
        learner.step()
    learner.chains = learner.chains + 1.0
    learner.iteration = 6  # stage 2, chain 2's turn
    rng = copy.deepcopy(learner.rng)
    start = learner._chain_starts()
    expected = tempered_start_of(learner, 2, rng)
    assert len(learner.net.layers) == 2 and np.array_equal(start[2:3], expected)
    flat = Learner(replace(config, grow=False, iterations=8), texture())
    flat.chains = flat.chains + 1.0
    flat.iteration = 6
    assert not flat._chain_starts()[2].any()  # rejuvenated, at zero
    with pytest.raises(ValueError, match="rejuvenate_tempered_stage"):
        tiny_config(rejuvenate_tempered_stage=0)


def test_a_tempered_restart_resumes_bit_for_bit_across_the_restart():
    config = tiny_config(iterations=8, tempered_restart=0.5)
    assert_resumes_bit_for_bit(config, texture(), 3, 8)  # stopped before the restart at 4


def test_a_rejuvenated_run_resumes_bit_for_bit():
    assert_resumes_bit_for_bit(tiny_config(iterations=8, rejuvenate=3), texture(), 4, 8)


@pytest.mark.parametrize("restart", [False, True])
def test_chains_start_again_at_each_new_stage_when_asked(restart):
    config = tiny_config(iterations=3, grow=True, restart_chains=restart)
    learner = Learner(config, texture())
    for _ in range(3):
        learner.step()
    assert learner.chains.any()
    learner.step()  # the first iteration of stage 2 starts from zero, or from the old chains
    assert len(learner.net.layers) == 2
    replay = Learner(config, texture())
    replay.load_state_dict(learner.state_dict())
    assert np.array_equal(replay.chains, learner.chains)


def test_restarted_stages_resume_bit_for_bit_across_the_stage_boundary():
    config = tiny_config(iterations=3, grow=True, restart_chains=True)
    assert_resumes_bit_for_bit(config, texture(), 2, 6)  # stopped in stage 1, ends in stage 2


def test_restart_changes_what_the_new_stage_starts_from():
    runs = {}
    for restart in (False, True):
        learner = Learner(tiny_config(iterations=3, grow=True, restart_chains=restart), texture())
        seen = []
        original = learner.synthesize

        def spy(original=original, seen=seen, learner=learner):
            seen.append(np.abs(learner._chain_starts()).max())
            return original()

        learner.synthesize = spy
        for _ in range(4):
            learner.step()
        runs[restart] = seen
    assert runs[True][3] == 0 and runs[False][3] > 0
    assert runs[True][:3] == runs[False][:3]


def test_a_rollback_at_a_stage_start_grows_the_net_once():
    config = tiny_config(iterations=3, grow=True)
    learner = Learner(config, texture())
    _inject(learner, {4: "inf"})  # the first attempt of stage 2
    for _ in range(3):
        learner.step()
    assert learner.step()["rollback"] and len(learner.net.layers) == 2
    assert learner.step()["rollback"] == "" and len(learner.net.layers) == 2


def test_the_margin_enlarges_the_canvas_and_samples_leave_it_out():
    config = tiny_config(synth_margin=5, synth_scale=1.5)
    learner = Learner(config, texture())
    assert learner.chains.shape == (6, 1, 34, 34)
    learner.chains = np.arange(learner.chains.size, dtype=float).reshape(learner.chains.shape)
    assert np.array_equal(learner.samples(), learner.chains[:, :, 5:29, 5:29])
    rf = Learner(tiny_config(synth_margin="rf"), texture())
    assert rf.margin == receptive_field(rf.net.layers) == 5 + 2 * 2
    assert Learner(tiny_config(), texture()).samples().shape == (6, 1, 16, 16)


@pytest.mark.parametrize(
    "layers",
    [
        [Layer(2, 3)],
        [Layer(2, 7, stride=2), Layer(2, 5), Layer(2, 3)],
        [Layer(2, 2, stride=2), Layer(2, 2, stride=2), Layer(2, 2)],
        [Layer(2, 15, stride=3), Layer(2, 5), Layer(2, 3)],
    ],
)
def test_receptive_field_is_the_window_one_top_unit_reads(layers):
    """Counted on the model itself: with positive weights every unit is on, and B for a
    single top unit (B_top one-hot) is non-zero exactly on the pixels that unit reads."""
    net = GenerativeConvNet(1, layers, backend="numpy", init_std=1.0, seed=0)
    net.set_weights([(np.abs(W) + 0.1, np.abs(b) + 0.1) for W, b in net.weights])
    I = np.ones((1, 1, 80, 80))
    _, h, w = net.layer_shapes(80, 80)[-1]
    B_top = np.zeros((1, layers[-1].channels, h, w))
    B_top[0, 0, h // 2, w // 2] = 1.0
    B = net.forward_backward(I, need_B=True, need_f=False, B_top=B_top)["B"][0, 0]
    rows, cols = np.nonzero(B.any(axis=1))[0], np.nonzero(B.any(axis=0))[0]
    assert np.ptp(rows) + 1 == np.ptp(cols) + 1 == receptive_field(layers)


def test_the_drift_verdict_of_an_object_model_leaves_closeness_out():
    """Closeness compares texture statistics: an aligned object's samples are not judged
    by it, while their mean and contrast still are."""
    from gcn_numpy.drift import drift_verdict

    start = {"step": 0, "mean": 110.0, "std": 50.0, "closeness": -0.8, "frame_score": 0.5}
    end = dict(start, step=1000, closeness=-1.1)
    assert not drift_verdict([start, end], data_mean=112.0)[0]
    assert drift_verdict([start, end], data_mean=112.0, texture=False) == (True, [])
    darker = dict(end, mean=100.0)
    assert not drift_verdict([start, darker], data_mean=112.0, texture=False)[0]
