"""The named recipes and their registry.

``base`` defines what a recipe is and imports no recipe; ``classic``, ``fast94`` (with its
one-technique ablations), ``fast94_muon``, ``fast94_record`` (on fast94-muon) and ``assignment`` each define one; this module
collects them.
"""
from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from speedrun.errors import SettingError
from speedrun.recipes.assignment import assignment_recipe
from speedrun.recipes.base import CalibratedTarget, Recipe, TargetChoice
from speedrun.recipes.classic import CLASSIC
from speedrun.recipes.fast94 import fast94_recipe, fast_recipe_ablations
from speedrun.recipes.fast94_muon import fast94_muon_recipe
from speedrun.recipes.fast94_record import fast94_record_recipe
from speedrun.schedules.spec import ScheduleSpec

__all__ = ["CLASSIC", "RECIPES", "CalibratedTarget", "Recipe", "ScheduleSpec", "TargetChoice", "get_recipe"]

RECIPES: Mapping[str, Recipe] = MappingProxyType(
    {r.name: r for r in (CLASSIC, fast94_recipe(), fast94_muon_recipe(), fast94_record_recipe(fast94_muon_recipe()),
                         assignment_recipe())})


def get_recipe(name: str) -> Recipe:
    """The named recipe, or a one-technique ablation of fast94 (``fast94-no_lookahead``, ...).

    ValueError lists the known names.
    """
    if name in RECIPES:
        return RECIPES[name]
    ablations = {r.name: r for r in fast_recipe_ablations().values()}
    if name in ablations:
        return ablations[name]
    raise SettingError("recipe", f"{name!r} is not a recipe; choose one of: {', '.join(RECIPES)}, "
                     f"or an ablation: {', '.join(ablations)}")
