"""Inductor's CUDA code for every recipe's compiled graphs, generated without a GPU, every
kernel compiled to an sm_90 cubin (``tests.support.inductor_sm90``, in a child process).

Each recipe must compile to exactly two graphs (the training step, forward and backward, and the
evaluation forward) with no graph break, compile nothing again on a second call with the same
shapes, leave no kernel without a cubin or spilling registers, and call no eager fallback beyond
the known ones below. Planted faults (a graph break, an op Inductor cannot lower) must fail.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from speedrun.recipes import RECIPES, Recipe
from tests.simcuda.conftest import REPO
from tests.support import cuda_shim
from tests.support.inductor_sm90 import RESULT_PREFIX

pytest.importorskip("triton")

# Eager kernels a compiled graph may call, and why each is accepted.
KNOWN_FALLBACKS = {
    "aten.convolution_backward": "the convolutions' backward is cuDNN's, as the forward is (extern_kernels.convolution)",
    "aten.adaptive_max_pool2d_backward": "fast94's global max pool: Inductor has no lowering for its backward",
}


def generate(recipe: str, *flags: str) -> dict:
    env = {**os.environ, **cuda_shim.preload_env(), "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-m", "tests.support.inductor_sm90", recipe, *flags], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=900)
    lines = [line for line in done.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    if done.returncode != 0 or not lines:
        pytest.fail(f"inductor_sm90 {recipe} {' '.join(flags)} exited {done.returncode}:\n{done.stderr[-3000:]}")
    return json.loads(lines[-1][len(RESULT_PREFIX):])


def unexpected_fallbacks(result: dict) -> dict[str, int]:
    found: dict[str, int] = {}
    for graph in result["graphs"]:
        for op, count in graph["fallbacks"].items():
            if op not in KNOWN_FALLBACKS:
                found[op] = found.get(op, 0) + count
    return found


def failed_stages(result: dict) -> dict[str, dict]:
    return {name: stage for name, stage in result["stages"].items() if stage["outcome"] != "generated"}


def graph_key(recipe: Recipe) -> tuple:
    """What the compiled graphs depend on: recipes equal in all of it compile the same graphs
    (``classic`` and ``assignment`` differ in their schedule only), so one compile covers both."""
    train = recipe.train
    return (recipe.model, recipe.augment, train.batch_size, train.eval_batch_size, train.amp_dtype,
            train.label_smoothing, train.train_accuracy, train.input_kernel, train.compile_mode)


def recipes_by_graphs() -> dict[str, list[str]]:
    """One recipe per distinct set of graphs, with every recipe it stands for."""
    groups: dict[tuple, list[str]] = {}
    for name in sorted(RECIPES):
        groups.setdefault(graph_key(RECIPES[name]), []).append(name)
    return {names[0]: names for names in groups.values()}


GROUPS = recipes_by_graphs()


def test_the_grouping_covers_every_recipe():
    assert sorted(name for names in GROUPS.values() for name in names) == sorted(RECIPES)


@pytest.mark.parametrize("recipe", sorted(GROUPS), ids=["+".join(GROUPS[r]) for r in sorted(GROUPS)])
def test_every_recipe_compiles_to_sm90_in_two_graphs_with_no_fallback_or_spill(recipe):
    result = generate(recipe)
    kernels = result["kernels"]
    registers = max((k["registers"] for k in kernels.values()), default=None)
    fallbacks = [g["fallbacks"] for g in result["graphs"]]
    print(f"{recipe}: {len(kernels)} kernels ({result['kernel_configs']} configs), at most {registers} registers; "
          f"eager fallbacks by graph {fallbacks}; library calls {[g['externs'] for g in result['graphs']]}")
    assert not failed_stages(result), failed_stages(result)
    assert result["graphs_compiled"] == 2 and result["graph_breaks"] == 0
    assert result["graphs_recompiled"] == 0, "a second call with the same shapes compiled again"
    assert len(result["graphs"]) == 3          # the step's forward and backward, the evaluation's forward
    assert kernels and not result["without_cubin"], f"kernels with no cubin: {result['without_cubin']}"
    assert not [name for name, k in kernels.items() if k["local_bytes"]], "a kernel spills registers to local memory"
    assert not unexpected_fallbacks(result)


def test_a_planted_graph_break_fails_the_compile():
    result = generate("fast94", "--source-only", "--plant", "graph-break")
    assert failed_stages(result), "a graph break went unnoticed"
    assert "graph_break" in result["stages"]["train step"]["message"] or \
        "graph break" in result["stages"]["train step"]["message"].lower()


def test_a_planted_op_without_a_lowering_is_an_unexpected_fallback():
    result = generate("fast94", "--source-only", "--plant", "fallback")
    assert set(unexpected_fallbacks(result)) == {"aten.nanmedian"}
