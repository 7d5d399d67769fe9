"""The table of settings (stmgt.settings) is the one place a setting is written: the configs' fields
and defaults, their validation, the `stmgt train` options, the Train page's fields and the
checkpoint loader's limits all follow its records, and every model config the trainer accepts
saves and loads."""

import re
from dataclasses import fields

import pytest
import torch

from stmgt.cli import build_parser, main
from stmgt.data.dataset import Scaler
from stmgt.errors import DataError
from stmgt.limits import LIMITS
from stmgt.model import STMGT, STMGTConfig
from stmgt.settings import MODEL, MODEL_SIZES, OPTIONS, SETTINGS, TRAIN, of
from stmgt.storage.checkpoint import load_checkpoint, save_checkpoint
from stmgt.training.trainer import TrainConfig
from tests.samples import small_dataset

CONFIGS = {MODEL: STMGTConfig, TRAIN: TrainConfig}
TINY = {"hidden_dim": 8, "num_blocks": 1, "heads": 2, "num_mixtures": 2, "gat_layout": "concat"}


def samples(setting):
    """The values at the edges of what a setting takes."""
    if setting.limit is not None:
        return [setting.limit.low, setting.limit.high]
    if setting.choices:
        return list(setting.choices)
    return [True, False] if setting.kind is bool else ["runs/a"]


def over(setting):
    """One step past the upper limit: one more whole number, or twice a real one."""
    high = setting.limit.high
    return high + 1 if setting.limit.whole else high * 2


def tiny_model(name, value) -> dict:
    """A tiny model's settings with `name` = `value` (heads divide hidden_dim; horizon = seq_len)."""
    values = {**TINY, name: value}
    if name == "hidden_dim":
        values["heads"] = 1
    if name == "heads":
        values["hidden_dim"] = value
    if name in ("seq_len", "horizon"):
        values["seq_len"] = values["horizon"] = value
    return values


LIMITED = [s for s in SETTINGS.values() if s.limit is not None]
MODEL_SAMPLES = [(s.name, v) for s in of(MODEL) for v in samples(s)]


@pytest.mark.parametrize("which", [MODEL, TRAIN])
def test_each_configs_fields_and_defaults_are_the_tables(which):
    assert {f.name: f.default for f in fields(CONFIGS[which])} == {s.name: s.default for s in of(which)}


def test_the_table_of_limits_holds_the_settings_own_bounds():
    assert all(LIMITS[s.name] is s.limit for s in LIMITED)


@pytest.mark.parametrize("name,value", MODEL_SAMPLES, ids=[f"{n}={v}" for n, v in MODEL_SAMPLES])
def test_every_model_config_the_trainer_accepts_the_loader_loads(tmp_path, name, value):
    config = STMGTConfig(**tiny_model(name, value))
    graph = small_dataset().graph
    save_checkpoint(tmp_path / "checkpoint.pt", STMGT(config), Scaler(20.0, 5.0, None, None), graph)
    assert load_checkpoint(tmp_path / "checkpoint.pt", graph).config == config


@pytest.mark.parametrize("name", [s.name for s in of(TRAIN)])
def test_every_training_value_at_an_edge_is_accepted(name):
    for value in samples(SETTINGS[name]):
        assert getattr(TrainConfig.from_dict({name: value}), name) == value


@pytest.mark.parametrize("name", [s.name for s in LIMITED])
def test_the_configs_refuse_one_past_a_limit_and_below_it_naming_the_setting(name):
    setting = SETTINGS[name]
    build = (lambda v: STMGTConfig(**{**TINY, name: v})) if setting.config == MODEL else \
        (lambda v: TrainConfig(**{name: v}))
    with pytest.raises(DataError, match=f"{name} = .* is over the limit of .*{setting.limit.why}"):
        build(over(setting))
    with pytest.raises(DataError, match=f"{name} must be a (whole|finite) number of at least"):
        build(setting.limit.low - 1)


@pytest.mark.parametrize("name", [s.name for s in SETTINGS.values() if s.limit is None])
def test_switches_choices_and_paths_refuse_other_values_naming_what_they_take(name):
    setting = SETTINGS[name]
    refused = [1, float("nan"), ["a"]] + ([] if setting.unset else [None]) + (["yes"] if setting.kind is bool else [])
    for value in refused:
        with pytest.raises(DataError, match=f"^{name} must be .*, got {re.escape(repr(value))}$"):
            setting.check(value)


@pytest.mark.parametrize("name", [s.name for s in OPTIONS])
def test_the_train_options_take_their_help_and_limits_from_the_table(name, capsys):
    setting = SETTINGS[name]
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    shown = " ".join(capsys.readouterr().out.split())
    assert setting.option in shown and " ".join(f"{setting.help} ({setting.span};".split()) in shown
    for value in samples(setting):
        args = build_parser().parse_args(["train", "--out", "r", setting.option, str(value)])
        assert getattr(args, name) == value
    refused = over(setting) if setting.limit else "other"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--out", "r", setting.option, str(refused)])
    err = capsys.readouterr().err
    if setting.limit:       # in the words the config itself refuses it with
        with pytest.raises(DataError) as refusal:
            setting.check(refused)
        assert str(refusal.value) in err
    else:
        assert "invalid choice: 'other'" in err


def test_patience_follows_the_score_that_picks_the_best_epoch():
    assert "what-if error when the best epoch is chosen on it" in SETTINGS["patience"].help


@pytest.mark.parametrize("name", MODEL_SIZES)
def test_the_loader_refuses_a_hand_edited_size_past_its_limit(tmp_path, name):
    path, graph = tmp_path / "checkpoint.pt", small_dataset().graph
    save_checkpoint(path, STMGT(STMGTConfig(**TINY)), Scaler(20.0, 5.0, None, None), graph)
    state = torch.load(path, weights_only=True)
    state["model_config"][name] = over(SETTINGS[name])
    torch.save(state, path)
    with pytest.raises(DataError) as refusal:
        load_checkpoint(path, graph)
    assert f"asks for {name} = {over(SETTINGS[name])}; this version accepts {LIMITS[name].accepted}" in str(
        refusal.value)


def test_the_train_forms_fields_are_drawn_from_their_records(app):
    at = app("views/train.py")
    shown = [s for s in SETTINGS.values() if s.section]
    assert shown
    for setting in shown:
        key = f"train_{setting.name}"
        if setting.kind is bool:
            widget = at.checkbox(key=key)
        elif setting.choices:
            widget = at.radio(key=key)
            assert widget.options == list(setting.choices)
        else:
            widget = at.number_input(key=key)
            assert (widget.min, widget.max) == (setting.limit.low, setting.limit.high), setting.name
        assert (widget.label, widget.help) == (setting.label, setting.help), setting.name
    for name in ("select", "tune", "device"):      # drawn by widgets of their own, worded by their records
        widget = at.radio(key=f"train_{name}")
        assert widget.label == SETTINGS[name].label and SETTINGS[name].help in widget.help
