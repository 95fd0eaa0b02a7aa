"""The epoch profile: real ops, shares that add up, a table and a command that prints it."""
import pytest

from speedrun.analysis.profiling import profile_epoch
from speedrun.bench.harness import HarnessOptions, prepare_run
from speedrun.cli import main
from speedrun.errors import SpeedrunError
from speedrun.models.resnet9 import ResNet9Config
from speedrun.outputs import write_new_text_file
from speedrun.recipes import CLASSIC
from speedrun.training.config import TrainConfig


def test_profile_of_one_epoch_names_the_convolutions(make_synthetic_cifar10):
    recipe = CLASSIC.replace(model=ResNet9Config(widths=(8, 16, 16, 32)), train=TrainConfig(epochs=1, batch_size=32))
    prepared = prepare_run(recipe, HarnessOptions(out=None), data=make_synthetic_cifar10(train=64, test=32),
                           log=lambda _: None)
    report = profile_epoch(prepared.trainer, prepared.lr, prepared.momentum)
    assert report.clock == "cpu" and report.total_us > 0
    assert sum(r.share for r in report.rows) == pytest.approx(1.0)
    assert [r.self_time_us for r in report.rows] == sorted((r.self_time_us for r in report.rows), reverse=True)
    assert any("convolution" in r.name for r in report.rows[:5])
    table = report.to_markdown(limit=3)
    assert table.count("\n| `") == 3


def test_profile_command_writes_its_table(real_cifar10, tmp_path, capsys):
    out = tmp_path / "profile.md"
    code = main(["profile", "--recipe", "classic", "--data-dir", str(real_cifar10.origin), "--device", "cpu",
                 "--train-subset", "64", "--test-subset", "32", "--batch-size", "32", "--width", "0.125",
                 "--rows", "5", "--markdown", str(out)])
    assert code == 0
    assert out.read_text() == capsys.readouterr().out
    assert main(["profile", "--rows", "0"]) == 2


def test_profile_never_overwrites_its_markdown_file(tmp_path):
    existing = tmp_path / "profile.md"
    existing.write_text("keep me")
    with pytest.raises(SpeedrunError, match="already exists; choose another --markdown path") as info:
        write_new_text_file(existing, "new", flag="--markdown")
    assert "--force" not in str(info.value) and existing.read_text() == "keep me"
