"""The population and budget flags of `ensnas run` / `ensnas resume` (parsing only, nothing runs)."""
from __future__ import annotations

import argparse

import pytest

from agent.commands.run import add_parser, build_config, duration
from evaluator.failures import ConfigError


def parse(*argv: str):
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    return parser.parse_args(["run", *argv])


@pytest.mark.parametrize("argv,enabled,islands", [
    ((), True, 2), (("--population",), True, 2), (("--islands", "4"), True, 4), (("--hill-climber",), False, 2),
])
def test_population_flags(argv, enabled, islands):
    config = build_config(parse(*argv))
    assert config.population.enabled is enabled and config.population.islands == islands


def test_contradicting_flags_are_a_usage_error():
    with pytest.raises(ConfigError, match="contradict"):
        build_config(parse("--islands", "3", "--hill-climber"))


def test_budget_flags_and_durations():
    config = build_config(parse("--max-wall", "90m", "--max-evaluations", "40", "--max-tokens", "100000",
                                "--pipeline", "lagged"))
    assert config.budget.max_wall_s == 5400 and config.budget.max_evaluations == 40
    assert config.budget.max_tokens == 100_000 and config.pipeline == "lagged"
    assert duration("2h") == 7200 and duration("45s") == 45 and duration("30") == 30
    for bad in ("soon", "-5m", "0"):
        with pytest.raises(argparse.ArgumentTypeError):
            duration(bad)
    with pytest.raises(SystemExit):
        parse("--max-wall", "soon")
