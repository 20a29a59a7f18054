"""Every setting is checked where it lives: a number must be finite, an int a real int, both in range."""

import pytest

from minigpt.errors import ConfigError
from minigpt.model.config import GPTConfig
from minigpt.train.config import TrainConfig, check_run_length, preset
from minigpt.units import format_duration, parse_duration

NAN, INF = float("nan"), float("inf")
HUGE = 2**63  # one past what torch's int64 holds


@pytest.mark.parametrize("setting, values", [
    ("lr", [NAN, INF, -INF, 0.0, -5.0, 1e40]),
    ("min_lr", [NAN, INF, -1e-4]),
    ("warmup_steps", [-5, 2.5, True, HUGE]),
    ("weight_decay", [NAN, INF, -0.1]),
    ("beta1", [NAN, -0.1, 1.0]),
    ("beta2", [NAN, INF, 1.5]),
    ("grad_clip", [NAN, INF, -1.0]),
    ("batch_size", [0, -5, 8.0, "8", HUGE]),
    ("grad_accum", [0, -1, 1.5]),
    ("max_steps", [0, -5, 10.0, HUGE]),
    ("time_budget", [0, 0.0, -5.0, NAN, INF, "5m", True]),
    ("eval_interval", [0, -5]),
    ("eval_iters", [0, 2.0]),
    ("log_interval", [0]),
    ("sample_tokens", [-1, 1.5]),
    ("val_fraction", [NAN, 0.0, 0.5]),
    ("seed", [-1, 1.5, HUGE, False]),
    ("bpe_vocab_size", [100, 4096.0, 2**20 + 1, HUGE]),
    ("tokenizer", ["words", 5]),
    ("schedule", ["linear", 1]),
    ("decay_fraction", [NAN, 0.0, -0.3, 1.5]),
    ("vocab_size", [0, -5, 50.5]),
    ("block_size", [0, -1, 16.0, HUGE]),
    ("n_layer", [0, 2.0]),
    ("n_head", [0, -2, 2.5, True, "2"]),
    ("n_embd", [0, -64, 64.0]),
    ("dropout", [NAN, INF, -INF, -0.1, 1.0]),
    ("layer_norm_epsilon", [NAN, INF, 0.0, -1e-5]),
    ("rope_theta", [NAN, 0.0, -1.0, "10000"]),
    ("bias", [1, "yes"]),
    ("residual", [0]),
    ("tie_weights", ["False"]),
    ("layer_norm", ["after", 0]),
    ("attn_impl", ["flash", 1]),
])
def test_bad_values_are_refused_naming_the_setting(setting, values):
    base = preset("tiny")
    for value in values:
        with pytest.raises(ConfigError, match=setting):
            base.with_overrides(**{setting: value})


@pytest.mark.parametrize("setting, value", [
    ("lr", 1.0), ("lr", 1), ("min_lr", 0.0), ("warmup_steps", 0), ("weight_decay", 0.0),
    ("beta1", 0.0), ("grad_clip", 0.0), ("sample_tokens", 0), ("seed", 0),
    ("seed", 2**63 - 1), ("max_steps", 10**12), ("dropout", 0.0), ("dropout", 0.99),
    ("time_budget", 0.5), ("time_budget", 3600), ("bpe_vocab_size", 2**20),
])
def test_values_at_the_edges_of_their_range_are_accepted(setting, value):
    cfg = preset("tiny").with_overrides(**{setting: value})
    assert getattr(cfg, setting, None) == value or getattr(cfg.model, setting) == value


def test_n_head_zero_is_a_clear_error_not_a_division_by_zero():
    with pytest.raises(ConfigError, match="n_head must be at least 1, got 0"):
        GPTConfig(n_head=0)
    with pytest.raises(ConfigError, match=r"n_embd \(64\) must be divisible by n_head \(3\)"):
        GPTConfig(n_embd=64, n_head=3)


def test_none_is_not_a_value():  # with_overrides reads None as "not given"; a file may hold it
    for setting in ("n_head", "dropout", "bias", "layer_norm"):
        with pytest.raises(ConfigError, match=setting):
            GPTConfig(**{setting: None})


def test_not_a_number_says_so():
    with pytest.raises(ConfigError, match="lr must be a finite number, got nan"):
        preset("tiny").with_overrides(lr=NAN)
    with pytest.raises(ConfigError, match="n_head must be a whole number, got 2.5"):
        GPTConfig(n_head=2.5)
    with pytest.raises(ConfigError, match="warmup_steps must be at least 0, got -5"):
        preset("tiny").with_overrides(warmup_steps=-5)


@pytest.mark.parametrize("record", [None, [], "gpt2", 12])
def test_settings_read_from_a_file_must_be_a_mapping(record):
    with pytest.raises(ConfigError, match="model settings"):
        GPTConfig.from_dict(record)
    with pytest.raises(ConfigError, match="training settings"):
        TrainConfig.from_dict(record)
    good = preset("tiny").to_dict()
    with pytest.raises(ConfigError, match="model settings"):
        TrainConfig.from_dict({**good, "model": record})


def test_a_file_with_odd_keys_is_a_clear_error():
    with pytest.raises(ConfigError, match="unknown model setting"):
        GPTConfig.from_dict({1: 2, "n_head": 2})
    with pytest.raises(ConfigError, match="training settings .* no model"):
        TrainConfig.from_dict({"lr": 1e-3})


def test_round_trip_through_a_dict():
    cfg = preset("gpu")
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg


def test_every_setting_has_a_rule():
    from dataclasses import fields

    from minigpt.model.config import SHAPE_RULES
    from minigpt.model.switches import SWITCHES
    from minigpt.train.config import TRAIN_RULES

    assert {f.name for f in fields(GPTConfig)} == set(SHAPE_RULES) | {s.name for s in SWITCHES}
    assert {f.name for f in fields(TrainConfig)} - {"model"} == set(TRAIN_RULES)


@pytest.mark.parametrize("text, seconds", [
    ("110s", 110), ("5m", 300), ("1h", 3600), ("90", 90), ("1h30m", 5400), ("2.5m", 150),
    ("1h0m5s", 3605), (" 1h 30m ", 5400), ("0.5", 0.5), ("5M", 300),
])
def test_a_time_is_read_in_seconds(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text, fragment", [
    ("0", "more than 0"), ("0s", "more than 0"), ("0h0m", "more than 0"),
    ("9" * 400 + "h", "finite"),
    ("-5m", "not a time"), ("inf", "not a time"), ("nan", "not a time"), ("", "not a time"),
    ("1h30", "not a time"), ("30m1h", "not a time"), ("5 minutes", "not a time"),
    ("1e3", "not a time"), ("m", "not a time"),
])
def test_a_bad_time_is_one_clear_error(text, fragment):
    with pytest.raises(ConfigError, match=fragment) as raised:
        parse_duration(text)
    assert "\n" not in str(raised.value) and len(str(raised.value)) < 120


@pytest.mark.parametrize("seconds", [0.5, 45, 110, 300, 5400, 3605])
def test_a_time_written_out_reads_back(seconds):
    assert parse_duration(format_duration(seconds)) == seconds


def test_a_run_is_as_long_as_its_steps_or_its_time_not_both():
    check_run_length(100, None)
    check_run_length(None, 60.0)
    with pytest.raises(ConfigError, match="not both"):
        check_run_length(100, 60.0)
