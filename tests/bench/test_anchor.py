"""The anchor flow on CPU against a small stand-in anchor that really trains: same data files,
interleaving, one record of the leaderboard's shape, and the ratio statistics."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from scipy import stats

from speedrun.bench.airbench import Airbench94
from speedrun.bench.anchor import interleaved_order, run_anchor
from speedrun.bench.anchor_side import AnchorOutcome
from speedrun.bench.harness import HarnessOptions
from speedrun.cli import main
from speedrun.errors import SpeedrunError
from speedrun.recipes.fast94 import fast94_recipe
from speedrun.results.leaderboard import (
    build_leaderboard,
    load_records,
    record_run_sets,
)
from speedrun.results.records import read_record


class SoftmaxStandIn:
    """A stand-in anchor: reads cifar10/*.pt from the cwd as airbench does, trains softmax regression
    on 8x8-pooled pixels for real, and reports its test accuracy. ``fail_seeds`` raise instead."""

    label = "softmax stand-in"

    def __init__(self, events: list, fail_seeds: tuple[int, ...] = (), record: Path | None = None) -> None:
        self.events, self.fail_seeds, self.record = events, fail_seeds, record
        self.records_seen: list[dict] = []      # the record file as each anchor run started

    def check(self, device: torch.device, train_images: int) -> None:
        self.events.append(("check", device.type))

    def prepare(self, device: torch.device) -> None:
        train, test = (torch.load(f"cifar10/{name}.pt", weights_only=True) for name in ("train", "test"))
        self.files = (train, test)
        self.x_train, self.y_train = self.features(train["images"]), train["labels"]
        self.x_test, self.y_test = self.features(test["images"]), test["labels"]

    @staticmethod
    def features(images_u8_nhwc: torch.Tensor) -> torch.Tensor:
        x = F.avg_pool2d(images_u8_nhwc.permute(0, 3, 1, 2).float() / 255, 4).flatten(1)
        return (x - x.mean(0)) / (x.std(0) + 1e-6)

    def rehearse(self) -> None:
        self.events.append(("rehearse",))

    def run(self, seed: int) -> AnchorOutcome:
        self.events.append(("anchor run", seed))
        if self.record is not None and self.record.exists():
            self.records_seen.append(read_record(self.record))
        if seed in self.fail_seeds:
            raise RuntimeError("stand-in failure")
        torch.manual_seed(seed)
        model = torch.nn.Linear(self.x_train.shape[1], 10)
        opt = torch.optim.SGD(model.parameters(), lr=0.5)
        for _ in range(40):
            opt.zero_grad()
            F.cross_entropy(model(self.x_train), self.y_train).backward()
            opt.step()
        with torch.no_grad():
            accuracy = (model(self.x_test).argmax(1) == self.y_test).float().mean()
        return AnchorOutcome(final_test_acc=float(accuracy), epochs=40)

    def describe(self) -> dict:
        return {"package": "tests", "own_timer": "none"}


def tiny_fast94():
    recipe = fast94_recipe(batch_size=32)
    return recipe.replace(model=dataclasses.replace(recipe.model, widths=(8, 16, 16), whiten_samples=64),
                          train=dataclasses.replace(recipe.train, epochs=2, eval_every=2, eval_batch_size=64))


def anchor_run(tmp_path: Path, data, side, runs: int, events: list) -> dict:
    options = HarnessOptions(runs=runs, seed=0, target=0.3, device="cpu", compile=False,
                             out=str(tmp_path / "anchor.json"))
    return run_anchor(tiny_fast94(), side, options, data=data, log=lambda line: events.append(("log", line)),
                      command=["test"], workdir=tmp_path / "work")


def test_interleaving_alternates_which_side_goes_first():
    assert interleaved_order(3) == [(0, True), (0, False), (1, False), (1, True), (2, True), (2, False)]


def test_anchor_flow_interleaves_same_data_and_writes_one_comparable_record(tmp_path, make_synthetic_cifar10):
    data = make_synthetic_cifar10(train=128, test=64)
    events: list = []
    side = SoftmaxStandIn(events)
    record = anchor_run(tmp_path, data, side, runs=3, events=events)

    # same data, offline: the files the anchor read are our dataset, in airbench's format
    train, test = side.files
    assert train["images"].dtype == torch.uint8 and tuple(train["images"].shape) == (128, 32, 32, 3)
    assert torch.equal(train["images"], torch.from_numpy(data.train_images))
    assert torch.equal(test["labels"], torch.from_numpy(data.test_labels)) and test["labels"].dtype == torch.int64
    assert len(train["classes"]) == 10

    # interleaving, as executed: each "pair" line is followed by that side's own work only
    assert events[0] == ("check", "cpu")
    timeline = [e for e in events if e[0] == "anchor run" or (e[0] == "log" and e[1].startswith("pair"))]
    ours, anchor = "speedrun fast94", "softmax stand-in"
    expected_sides = [ours, anchor, anchor, ours, ours, anchor]
    pair_lines = [e[1] for e in timeline if e[0] == "log"]
    assert [line.split(": ", 1)[1].split("  seed")[0] for line in pair_lines] == expected_sides
    for i, event in enumerate(timeline):
        if event[0] == "log" and anchor in event[1]:
            assert timeline[i + 1] == ("anchor run", int(event[1].rsplit(" ", 1)[1]))
        if event[0] == "log" and ours in event[1]:
            assert i + 1 == len(timeline) or timeline[i + 1][0] == "log", "no anchor work inside our run"
    assert [o["side"] for o in record["order"]] == expected_sides

    # one record, readable by the schema check and the leaderboard, with both sides
    path = Path(record["_path"])
    stored = read_record(path)
    assert stored["kind"] == "anchor" and stored["runs"] == []
    sides = record_run_sets(stored)
    assert [s.label for s in sides] == [ours, anchor]
    for s in sides:
        assert [r["seed"] for r in s.runs] == [0, 1, 2]
        assert all(r["status"] == "ok" and r["call_s"] > 0 for r in s.runs)
        assert s.summary["accuracy"]["n"] == 3 and s.summary["accuracy"]["ci95_low"] is not None
    assert min(r["final_test_acc"] for r in sides[1].runs) > 0.3, "the stand-in really learned (chance 0.1)"
    records, problems = load_records([path])
    (group,) = build_leaderboard(records)
    assert sorted(e.recipe for e in group.entries) == sorted([f"fast94 [{ours}]", f"fast94 [{anchor}]"])
    assert problems == []

    # time-to-target is the call time for runs that reached the target
    for s in sides:
        for r in s.runs:
            assert r["time_to_target_s"] == (r["call_s"] if r["reached_target"] else None)

    # the ratio of mean call times: 1 + the Welch difference over the anchor's mean, CI and p of that test
    a = [r["call_s"] for r in sides[1].runs]
    o = [r["call_s"] for r in sides[0].runs]
    ratio = stored["summary"]["run_time_ratio"]
    welch = stats.ttest_ind(o, a, equal_var=False)
    ci, mean_a = welch.confidence_interval(0.95), sum(a) / 3
    assert ratio["ratio"] == pytest.approx((sum(o) / 3) / mean_a)
    assert ratio["ci95_low"] == pytest.approx(1 + ci.low / mean_a) and ratio["ci95_high"] == pytest.approx(1 + ci.high / mean_a)
    assert ratio["df"] == pytest.approx(welch.df) and ratio["p_value"] == pytest.approx(welch.pvalue)
    accuracy = stored["summary"]["accuracy_difference"]
    acc_o = [x["final_test_acc"] for x in sides[0].runs]
    acc_a = [x["final_test_acc"] for x in sides[1].runs]
    assert accuracy["ours_minus_anchor"] == pytest.approx(sum(acc_o) / 3 - sum(acc_a) / 3)


def test_a_failing_anchor_run_is_recorded_and_ratios_need_two_runs(tmp_path, make_synthetic_cifar10):
    events: list = []
    record = anchor_run(tmp_path, make_synthetic_cifar10(train=64, test=32), SoftmaxStandIn(events, fail_seeds=(1,)),
                        runs=2, events=events)
    anchor_runs = record["sides"][1]["runs"]
    assert [r["status"] for r in anchor_runs] == ["ok", "failed"]
    assert "stand-in failure" in anchor_runs[1]["error"]
    assert record["sides"][1]["summary"]["failed"] == 1
    assert record["summary"]["run_time_ratio"]["ratio"] is None        # one completed anchor run
    assert any("needs 2 finished runs a side" in e[1] for e in events if e[0] == "log")


def test_the_record_is_rewritten_after_every_pair_and_marked_incomplete_until_the_last(
        tmp_path, make_synthetic_cifar10):
    events: list = []
    side = SoftmaxStandIn(events, record=tmp_path / "anchor.json")
    anchor_run(tmp_path, make_synthetic_cifar10(train=64, test=32), side, runs=3, events=events)
    # pair 0 (ours, anchor) is on disk when pair 1's anchor run starts; pairs 0-1 when pair 2's does
    assert [len(r["sides"][0]["runs"]) for r in side.records_seen] == [1, 2]
    assert [r["complete"] for r in side.records_seen] == [False, False]
    assert all(r["runs_planned"] == 3 for r in side.records_seen)
    final = read_record(tmp_path / "anchor.json")
    assert final["complete"] is True and len(final["sides"][1]["runs"]) == 3


def test_the_headline_gives_the_run_time_ratio_accuracy_p_value_and_a_comparable_target(
        tmp_path, make_synthetic_cifar10):
    events: list = []
    record = anchor_run(tmp_path, make_synthetic_cifar10(train=64, test=32), SoftmaxStandIn(events), runs=2,
                        events=events)
    headline = record["summary"]["headline"]
    assert headline["run_time_ratio"] == record["summary"]["run_time_ratio"]["ratio"]
    assert headline["accuracy_p_value"] == record["summary"]["accuracy_difference"]["p_value"]
    assert headline["target"] == 0.3
    means = [s["summary"]["accuracy"]["mean"] for s in record["sides"]]
    assert headline["both_reach"] == all(m >= 0.3 for m in means)
    assert "run time at matched budgets" in headline["text"]
    assert any(e[1] == headline["text"] for e in events if e[0] == "log")
    # ours trained its whole budget with one evaluation at the end, as the anchor does
    ours = record["sides"][0]["runs"]
    assert all([e["test_acc"] is not None for e in r["epochs"]] == [False, True] for r in ours)


def test_airbench_anchor_refuses_a_cpu_with_one_clear_error():
    with pytest.raises(SpeedrunError, match="needs a CUDA GPU"):
        Airbench94().check(torch.device("cpu"), 50000)


@pytest.mark.skipif(torch.cuda.is_available(), reason="would start real airbench runs on this GPU")
def test_anchor_command_fails_on_cpu_with_one_line_and_exit_2(capsys):
    assert main(["anchor", "airbench94", "--runs", "1", "--no-record"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "CUDA" in err and err.startswith("speedrun: error:")


def test_airbench_refuses_fewer_training_images_than_one_of_its_batches():
    """Its loader drops a partial batch: a smaller subset would train nothing and crash its warm-up."""
    from speedrun.bench.airbench import TRAIN_BATCH

    side = Airbench94()
    with pytest.raises(SpeedrunError, match=f"--train-subset 512: .*batches of {TRAIN_BATCH}"):
        side.check(torch.device("cuda"), 512)


def test_an_interrupted_anchor_keeps_its_pairs_in_a_record_marked_interrupted(tmp_path, make_synthetic_cifar10):
    events: list = []

    class InterruptedStandIn(SoftmaxStandIn):
        def run(self, seed: int) -> AnchorOutcome:
            if seed == 1:
                raise KeyboardInterrupt          # Ctrl-C, or SIGTERM as the CLI takes it, in pair 2
            return super().run(seed)

    with pytest.raises(KeyboardInterrupt):
        anchor_run(tmp_path, make_synthetic_cifar10(train=64, test=32), InterruptedStandIn(events), runs=3,
                   events=events)
    record = read_record(tmp_path / "anchor.json")
    assert record["interrupted"] is True and record["complete"] is False
    assert [len(side["runs"]) for side in record["sides"]] == [1, 1]
