"""The switches' table (model/switches.py) is the one place a switch is written: a switch added
to a copy of it appears in the configuration, `info`, ablate's variants and help, export's
refusal and train's options, with nothing else edited."""

import pytest
import typer
from typer.testing import CliRunner

from minigpt.checkpoint import Checkpoint
from minigpt.cli.app import switch_options
from minigpt.cli.report import print_info
from minigpt.data.tokenizer import CharTokenizer
from minigpt.errors import ConfigError
from minigpt.hf.gpt2 import export_problems
from minigpt.model.config import GPTConfig, config_class
from minigpt.model.switches import SWITCHES, Switch, Variant, changed, unexportable
from minigpt.rules import Flag
from minigpt.train.ablation import catalogue

PARALLEL = Switch("parallel", Flag(), False, "attention and the MLP side by side (GPT-J)",
                  variants=(Variant("parallel", "attention and MLP in parallel",
                                    {"parallel": True}, kind="add"),))
TABLE = (*SWITCHES, PARALLEL)
SHAPE = dict(vocab_size=10, block_size=8, n_layer=1, n_head=1, n_embd=8)


def test_a_new_switch_is_a_checked_field_with_gpt2_s_default():
    config = config_class(TABLE)
    assert config(**SHAPE).parallel is False
    assert config(**SHAPE, parallel=True).parallel is True
    with pytest.raises(ConfigError, match="parallel must be true or false"):
        config(**SHAPE, parallel="yes")
    with pytest.raises(TypeError):  # the real configuration is not changed by the copy
        GPTConfig(**SHAPE, parallel=True)


def test_a_new_switch_appears_in_info_ablate_and_export(capsys):
    cfg = config_class(TABLE)(**SHAPE, parallel=True)
    assert [s.name for s in changed(cfg, TABLE)] == ["parallel"]
    print_info(Checkpoint(cfg, {}, CharTokenizer("abcdefghij")))
    assert "parallel=True (attention and MLP in parallel)" in capsys.readouterr().out
    assert [v.name for v in catalogue(TABLE)["parallel"]] == ["parallel"]
    assert "parallel" not in catalogue()
    assert unexportable(cfg, TABLE) == ["parallel=True (attention and MLP in parallel)"]
    assert export_problems(cfg) == ["parallel=True (attention and MLP in parallel)"]


def test_a_new_switch_is_an_option_of_train():
    app = typer.Typer()
    seen = {}

    @app.command()
    @switch_options(TABLE)
    def train(steps: int = 1, switches: dict | None = None):
        seen.update(switches)

    runner = CliRunner()
    assert "--parallel" in runner.invoke(app, ["--help"]).output
    assert runner.invoke(app, ["--parallel", "--no-residual"]).exit_code == 0
    assert seen == {"parallel": True, "residual": False}


def test_train_s_switch_options_give_values_of_their_type():
    """--mlp-ratio 2.6667 and --n-kv-head 2 were refused: the options gave text, "2.6667"."""
    app = typer.Typer()
    seen = {}

    @app.command()
    @switch_options()
    def train(steps: int = 1, switches: dict | None = None):
        seen.update(switches)

    result = CliRunner().invoke(app, ["--mlp-ratio", "2.6667", "--n-kv-head", "2",
                                      "--position", "rope"])
    assert result.exit_code == 0, result.output
    assert seen == {"mlp_ratio": 2.6667, "n_kv_head": 2, "position": "rope"}
    assert GPTConfig(**{**SHAPE, "n_head": 2}, **seen).n_kv_head == 2


def test_gpt2_s_table_exports_as_gpt2():
    assert export_problems(GPTConfig(**SHAPE)) == []
    assert export_problems(GPTConfig(**SHAPE, tie_weights=False)) == []
    assert export_problems(GPTConfig(**SHAPE, residual=False, bias=False)) == [
        "residual=False (no residual connections)",
        "bias=False (GPT-2: True)"]
