"""One CLI convention: every command's help ends with an example, every option is described, and the
model-running commands share --device, --threads, --seed and --quiet (batch commands also --continue)."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
import typer

from medsuite.cli import _build

# the demo is not here: it runs fixed seeds on the CPU so that every machine gets the README's figures
MODEL_RUNNING = {"register", "segment", "pretrain", "classify", "evaluate segmentation", "train segmentation", "train registration", "train concepts"}
BATCH = {"segment", "classify", "register"}


def _commands() -> dict:
    found: dict = {}

    def walk(command, path: str) -> None:  # typer's own click: groups are told by their commands
        if hasattr(command, "commands"):
            for name, sub in command.commands.items():
                walk(sub, f"{path} {name}".strip())
        else:
            found[path] = command

    walk(typer.main.get_command(_build()), "")
    return found


def test_every_command_ends_its_help_with_an_example_and_describes_every_option():
    commands = _commands()
    assert {"register", "segment", "classify", "pretrain", "train segmentation", "pipelines show"} <= set(commands)
    for path, command in commands.items():
        assert (command.epilog or "").startswith("Example: medsuite "), path
        for param in command.params:
            if param.param_type_name == "option" and param.name != "help":
                assert param.help, f"{path} {param.opts[0]} has no description"


def test_model_running_and_batch_commands_share_the_runtime_options():
    commands = _commands()
    for path in MODEL_RUNNING:
        options = {opt for param in commands[path].params for opt in param.opts}
        assert {"--device", "--threads", "--seed", "--quiet"} <= options, path
    for path in BATCH:
        assert "--continue" in {opt for param in commands[path].params for opt in param.opts}, path


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
@pytest.mark.parametrize("command", [["train", "registration"], ["train", "concepts"]])
def test_trainers_take_the_device_and_refuse_a_missing_one_before_any_work(tmp_path, command):
    run = tmp_path / "run"
    result = subprocess.run([sys.executable, "-m", "medsuite.cli", *command, "--device", "cuda", "-o", str(run)], capture_output=True, text=True)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1 and "--device" in result.stderr
    assert not run.exists()
