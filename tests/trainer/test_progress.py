"""Training progress (trainer/engine.py): a bar counted in batches, and a line when a run resumes."""

from __future__ import annotations

from pathlib import Path

import pytest

from axtrain.trainer.config import make_config
from axtrain.trainer.engine import train

# breast-cancer: 455 training samples (80 % of 569) -> 8 batches of 64 per epoch
SETTINGS = {"app": "breast-cancer", "method": "bp", "epochs": 3, "batch_size": 64, "device": "cpu"}


def test_the_bar_counts_batches_within_the_epoch(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    train(make_config(SETTINGS, "test"), tmp_path / "r", progress=True)
    err = capsys.readouterr().err
    assert "batch" in err and "epoch 3/3" in err
    assert "/24 [" in err  # 3 epochs x 8 batches, with tqdm's [elapsed<remaining] ETA
    assert "<" in err.split("/24 [", 1)[1].split("]", 1)[0]


def test_a_resumed_run_says_from_which_epoch(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = make_config(SETTINGS, "test")
    train(config, tmp_path / "r", stop_after_epochs=2)
    capsys.readouterr()
    train(config, tmp_path / "r", progress=True)
    err = capsys.readouterr().err
    assert f"resuming breast-cancer bp from epoch 2 of 3: the checkpoint ({tmp_path / 'r'}) holds epochs 1-2" in err
    assert "16/24" in err  # the bar starts where the checkpoint left off
