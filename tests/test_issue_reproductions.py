"""The bad inputs a user tried, each refused in one line, exit 2, before any work: the data named
here does not exist, so a command that started work would be refused for the data instead."""
from __future__ import annotations

import json

import pytest

from speedrun.cli import main
from tests.results.test_records import minimal_record

T = ["--epochs", "1", "--train-subset", "256", "--test-subset", "100", "--batch-size", "64", "--width", "0.125",
     "--target", "0.3", "--data-dir", "/nonexistent/cifar10", "--no-download", "--device", "cpu"]

CASES = [
    ([*T, "--epochs", "1.5", "--swa-epochs", "1", "--swa-lr", "0.01"], "needs a whole --epochs"),
    ([*T, "--snapshot-ensemble"], "no warm restarts"),
    ([*T, "--crop-padding", "1e20"], "argument --crop-padding"),
    ([*T, "--crop-padding", "100000000000000000000"], "argument --crop-padding"),
    ([*T, "--schedule", "step_lr", "--base-lr", "1e300", "--step-size", "1"], "argument --base-lr"),
    ([*T, "--max-lr", "1e300"], "argument --max-lr"),
    (["lr-find", *T, "--num-steps", "1e20"], "argument --num-steps"),
    (["lr-find", *T, "--out", ""], "argument --out: is empty"),
    ([*T, "--device", ""], "argument --device: is empty"),
    ([*T, "--schedule", "multistep_lr", "--base-lr", "0.1", "--milestones", ""], "argument --milestones"),
    ([*T, "--widths", "8,16,32,0"], "argument --widths"),
    ([*T, "--recipe", "fast94", "--widths", "8,16,32,8"], "--widths must be 3 positive whole numbers"),
    (["sweep", "spec.toml", "--progress-every", "-1"], "argument --progress-every"),
    (["sweep", "spec.toml", "--max-runs", "0"], "argument --max-runs"),
    ([*T, "--ou", "x.json"], "unrecognized arguments: --ou"),        # no abbreviation is ever taken
    (["leaderboard", "--form", "csv"], "unrecognized arguments: --form"),
]


@pytest.mark.parametrize(("argv", "says"), CASES, ids=[" ".join(a[len(T):] if a[:len(T)] == T else a)[:60]
                                                        for a, _ in CASES])
def test_refused_in_one_line_before_any_work(argv, says, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code = main(argv)
    err = capsys.readouterr().err
    lines = [line for line in err.strip().splitlines() if not line.startswith("warning: ")]
    assert code == 2 and len(lines) == 1 and says in lines[0], err
    assert "nonexistent" not in lines[0], "work started: the data was looked for before the refusal"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("change", [
    lambda r: r["runs"][0].update(time_to_target_s=1.7e308, reached_target=True),
    lambda r: r.update(schedule={"lr": 5}),
    lambda r: r.update(nvml=[1, 2]),
    lambda r: r.update(kind="anchor", sides=[1, 2]),
    lambda r: r["runs"][0].update(final_test_acc="0.93"),
    lambda r: r["runs"][0].update(final_test_acc="NaN"),
])
@pytest.mark.parametrize("reader", ["leaderboard", "compare", "plot", "export"])
def test_a_malformed_record_is_named_by_every_reader(change, reader, tmp_path, capsys):
    record = minimal_record()
    change(record)
    path = tmp_path / "r.json"
    path.write_text(json.dumps(record))
    argv = {"compare": [reader, str(path), str(path)]}.get(reader, [reader, str(path)])
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2 and "r.json" in err and "Traceback" not in err, err
