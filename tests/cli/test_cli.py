"""The command line: a thin layer whose user errors are one line and exit code 2."""
import json
import subprocess
import sys

import pytest

from speedrun.cli import main


@pytest.fixture
def npz_dataset(real_cifar10):
    """The CLI reads real, full-size CIFAR-10 files only; subsets keep the runs short."""
    return real_cifar10.origin


TINY_FLAGS = ["--epochs", "1", "--batch-size", "32", "--width", "0.125", "--no-compile", "--device", "cpu",
              "--train-subset", "64", "--test-subset", "32"]


def test_default_command_trains_and_writes_a_record(npz_dataset, tmp_path, capsys):
    out = tmp_path / "records"
    code = main([*TINY_FLAGS, "--data-dir", str(npz_dataset), "--target", "0.05", "--runs", "2", "--out", str(out)])
    assert code == 0
    (path,) = out.glob("*.json")
    record = json.loads(path.read_text())
    assert record["command"][0] == "speedrun" and record["summary"]["runs"] == 2
    assert record["config"]["harness"]["train_subset"] == 64
    assert record["dataset"]["name"] == "CIFAR-10 (JPEG-q75 copy)"
    printed = capsys.readouterr().out
    assert "epoch" in printed and "record:" in printed


def test_schedule_flags_choose_the_policy(npz_dataset, tmp_path):
    out = tmp_path / "r.json"
    code = main([*TINY_FLAGS, "--epochs", "2", "--data-dir", str(npz_dataset), "--out", str(out),
                 "--schedule", "cyclic_lr", "--base-lr", "0.01", "--max-lr", "0.1", "--mode", "triangular2",
                 "--step-size-up", "1ep"])
    assert code == 0
    schedule = json.loads(out.read_text())["schedule"]
    assert schedule["name"] == "cyclic_lr" and schedule["params"]["mode"] == "triangular2"
    assert schedule["lr"][0] == pytest.approx(0.01) and max(schedule["lr"]) == pytest.approx(0.1)
    assert schedule["momentum"] is not None  # cyclic_lr cycles momentum by default


@pytest.mark.parametrize("argv,needle", [
    (["--target", "1.5"], "--target: must be a finite number > 0 and <= 1, got 1.5"),
    (["--runs", "0"], "--runs: must be a whole number >= 1"),
    (["--recipe", "nope"], "--recipe 'nope' is not a recipe"),
    (["--epochs", "0"], "--epochs: must be a finite number > 0"),
    (["--momentum", "1.5"], "--momentum: must be a finite number >= 0 and < 1"),
    (["--momentum", "0", "--nesterov"], "--nesterov needs --momentum > 0"),
    (["--weight-decay", "inf"], "--weight-decay: 'inf' is not a finite number"),
    (["--label-smoothing", "nan"], "--label-smoothing: 'nan' is not a finite number"),
    (["--width", "nan"], "--width: 'nan' is not a finite number"),
    (["--widths", "8,x"], "--widths: 'x' is not a whole number"),
    (["--widths", "8,16"], "--widths must be 4 positive whole numbers"),
    (["--whiten-eps", "1e-3"], "--whiten-eps does not apply to recipe classic"),
    (["--cutout", "-2"], "--cutout: must be a whole number >= 0"),
    (["--epochs", "two"], "--epochs: 'two' is not a number"),
    (["--batch-size", "2.5"], "--batch-size: '2.5' is not a whole number"),
    (["--optimizer", "adagrad", "--schedule", "one_cycle_lr", "--max-lr", "0.1"], "cycle_momentum"),
    (["--schedule", "cosine_annealing_lr", "--base-lr", "0.1", "--mode", "triangular"], "--mode"),
    (["--base-lr", "0.1"], "--schedule NAME"),
    (["--max-lr", "auto", "--schedule", "cosine_annealing_lr"], "--max-lr is not a parameter of schedule"),
    (["--swa-epochs", "3"], "--swa-lr"),
    (["--schedule", "nope"], "nope"),
    (["--no-download", "--data-dir", "/definitely/not/here"], "/definitely/not/here"),
    (["--train-subset", "100000"], "--train-subset"),
    (["--width", "-1"], "--width"),
    (["--tta", "all"], "--tta: must be one of none, flip, multi, selective; got 'all'"),
    (["--device", "foo"], "--device 'foo' is not a device name"),
    (["--device", "mps"], "--device mps: speedrun runs on cpu or cuda"),
    (["--device", "cuda"], "--device cuda: CUDA is not available here"),
    (["--width", "inf"], "--width: 'inf' is not a finite number"),
    (["--plateau", "--plateau-factor", "2"], "--plateau-factor: must be a finite number > 0 and < 1"),
    (["--plateau", "--plateau-eps", "-1"], "--plateau-eps: must be a finite number >= 0"),
    (["--swa-epochs", "0", "--swa-lr", "0.1"], "--swa-epochs: must be a whole number >= 1"),
    (["--schedule", "one_cycle_lr", "--max-lr", "0"], "learning rate 0 at every step"),
    (["--schedule", "one_cycle_lr", "--max-lr", "-1"], "--max-lr: must be a finite number >= 0"),
    (["--schedule", "cyclic_lr", "--base-lr", "0.1", "--max-lr", "0.4", "--gamma", "-2"], "--gamma"),
    (["--epochs", "4", "--schedule", "multistep_lr", "--base-lr", "0.1", "--milestones", "1ep,5ep"],
     "--milestones 10 lie(s) past the run's end"),
    (["--swa-epochs", "1", "--swa-lr", "nan"], "--swa-lr: 'nan' is not a finite number"),
    (["--seed", str(2**64)], "--seed: must be a whole number >= 0 and <="),
    (["--no-such-flag"], "unrecognized arguments: --no-such-flag"),
    (["--cuda-graph"], "--cuda-graph needs a CUDA device"),
    (["--compile-mode", "reduce-overhead"], "--compile-mode: must be one of default, max-autotune-no-cudagraphs; got 'reduce-overhead'"),
    (["--input-kernel", "--brightness", "0.14"], "--input-kernel builds batches without colour jitter"),
    (["--contrast", "1"], "--contrast"),
    (["--recipe", "fast94", "--head-pool", "mean"], "--head-pool"),
])
def test_bad_input_is_one_line_and_exit_2(argv, needle, npz_dataset, tmp_path, capsys):
    argv = argv if "--data-dir" in argv else ["--data-dir", str(npz_dataset), *argv]
    code = main([*TINY_FLAGS, *argv, "--out", str(tmp_path / "never")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith("speedrun: error:") and needle in err[0]
    assert not (tmp_path / "never").exists()


def test_module_entry_point_exits_2_without_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "speedrun", "--data-dir", str(tmp_path / "missing"), "--no-record"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and proc.stderr.strip().splitlines()[-1].startswith("speedrun: error:")


def test_every_recipe_setting_is_a_flag_of_train(capsys):
    """Adding a field to a recipe config is one edit: the flag (and its help) comes from the dataclass."""
    import dataclasses

    from speedrun.overrides import RECIPE_SECTIONS, train_parser

    assert main(["train", "--help"]) == 0
    help_text = capsys.readouterr().out
    offered = {opt for action in train_parser()._actions for opt in action.option_strings}
    for section in RECIPE_SECTIONS:
        flags = section.flags()
        for cls in section.classes:
            for field in dataclasses.fields(cls):
                assert field.name in flags, f"{cls.__name__}.{field.name} is not a setting of train"
        for name, flag in flags.items():
            assert flag in offered, f"{section.key}.{name}: {flag} is not a flag of train"
            assert flag in help_text, f"{section.key}.{name}: {flag} is not in train --help"


def test_flags_override_only_what_they_name():
    from speedrun.overrides import train_parser, train_settings
    from speedrun.recipes import get_recipe

    def recipe_of(*argv):
        return train_settings(train_parser().parse_args(list(argv)), resolve_auto=False).recipe

    recipe, base = recipe_of("--recipe", "fast94", "--widths", "8,16,16", "--whiten-eps", "0.001", "--no-dirac-init",
                             "--full-budget", "--optimizer-eps", "1e-6"), get_recipe("fast94")
    assert recipe.model.widths == (8, 16, 16) and recipe.model.whiten_eps == 0.001 and not recipe.model.dirac_init
    assert recipe.train.stop_at_target is False and recipe.optimizer.eps == 1e-6
    assert recipe.replace(model=base.model, train=base.train, optimizer=base.optimizer,
                          description=base.description) == base
    assert recipe.description.startswith("fast94 as run: "), "a changed recipe is described as run"
    assert recipe_of("--recipe", "fast94") == base
    # The train command's own parser reads the same flags the same way.
    from speedrun.cli import build_parser
    args = build_parser("train").parse_args(["train", "--recipe", "fast94", "--widths", "8,16,16", "--whiten-eps",
                                             "0.001", "--no-dirac-init", "--full-budget", "--optimizer-eps", "1e-6"])
    assert train_settings(args, resolve_auto=False).recipe == recipe


@pytest.mark.parametrize("command", ["leaderboard", "compare", "plot", "export"])
def test_record_commands_start_without_importing_torch(command):
    code = ("import sys\nfrom speedrun.cli import main\n"
            f"code = main([{command!r}, '--help'])\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\nsys.exit(code)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert command in proc.stdout


def test_top_level_help_lists_every_command_and_version_works(capsys):
    from speedrun import __version__
    from speedrun.cli import COMMANDS

    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert all(c.name in out for c in COMMANDS)
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"speedrun {__version__}"


def test_an_empty_out_is_refused_in_one_line(npz_dataset, capsys):
    assert main([*TINY_FLAGS, "--data-dir", str(npz_dataset), "--out", ""]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--out: is empty" in err[0]


def test_a_record_is_rerun_exactly_from_its_recipe(npz_dataset, tmp_path):
    first = tmp_path / "first.json"
    assert main([*TINY_FLAGS, "--data-dir", str(npz_dataset), "--recipe", "fast94", "--widths", "8,16,16",
                 "--whiten-samples", "64", "--target", "0.05", "--out", str(first)]) == 0
    again = tmp_path / "again.json"
    assert main(["--recipe-from", str(first), "--device", "cpu", "--no-compile", "--data-dir", str(npz_dataset),
                 "--train-subset", "64", "--test-subset", "32", "--target", "0.05", "--out", str(again)]) == 0
    a, b = (json.loads(p.read_text()) for p in (first, again))
    assert b["config"]["recipe"] == a["config"]["recipe"]
    assert [e["train_loss"] for e in b["runs"][0]["epochs"]] == [e["train_loss"] for e in a["runs"][0]["epochs"]]
