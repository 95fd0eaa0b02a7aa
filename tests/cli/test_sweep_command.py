"""``speedrun sweep``: a bad spec or a missing Ray is one line and exit 2, before anything runs."""
from __future__ import annotations

import sys

import pytest

from speedrun.cli import main


def spec_file(tmp_path, text: str):
    path = tmp_path / "spec.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("text, says", [
    ("[variants.a]\nbogus-flag = 1", "variant 'a': unrecognized arguments: --bogus-flag 1"),
    ("[variants.a]\nepochs = 'x'", "variant 'a': argument --epochs: 'x' is not a number"),
    ("[variants.a]\nx = 1\n[variants.a]\ny = 2", "not valid TOML"),
    ("[grid]\nepochs = []", "[grid] epochs must be a non-empty list"),
    ("[base]\nseed = 1", "[base] seed is set by the sweep itself"),
])
def test_a_bad_spec_is_one_line_exit_2_and_writes_nothing(tmp_path, capsys, text, says):
    pytest.importorskip("ray")
    out = tmp_path / "out"
    code = main(["sweep", str(spec_file(tmp_path, text)), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and says in err and err.count("\n") == 1, err
    assert not out.exists()


def test_without_ray_the_command_says_how_to_install_it(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)       # import ray now fails, as when it is not installed
    code = main(["sweep", str(spec_file(tmp_path, "seeds = 1")), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and "pip install 'speedrun[sweep]'" in err and err.count("\n") == 1


def test_a_bad_ray_option_names_its_flag(tmp_path, capsys):
    pytest.importorskip("ray")
    code = main(["sweep", str(spec_file(tmp_path, "seeds = 1")), "--cpus-per-run", "0"])
    err = capsys.readouterr().err
    assert code == 2 and "--cpus-per-run" in err


def test_joining_a_cluster_that_is_not_there_is_one_line_naming_address(tmp_path, capsys, monkeypatch, real_cifar10):
    ray = pytest.importorskip("ray")
    if ray.is_initialized():
        pytest.skip("a Ray is already running in this process")

    def no_cluster(**kwargs):
        # What ray.init(address="auto") raises with no cluster on the machine. (A real "auto"
        # would join any Ray running here, another test run's included, and train on it.)
        assert kwargs["address"] == "auto"
        raise ConnectionError("Could not find any running Ray instance. Please specify the one to connect to.")

    monkeypatch.setattr(ray, "init", no_cluster)
    base = f"seeds = 1\n[base]\nrecipe = 'classic'\nepochs = 1\ndata-dir = '{real_cifar10.origin}'"   # data is read first
    code = main(["sweep", str(spec_file(tmp_path, base)),
                 "--address", "auto", "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and "--address" in err and "could not start or join" in err and err.count("\n") == 1, err
    assert not (tmp_path / "out").exists()
