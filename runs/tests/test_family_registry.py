"""runs.families.get_family: one module per family of the one list (recipes.catalog), loaded
on first use."""

import subprocess
import sys
from pathlib import Path

import pytest

from recipes.catalog import FAMILIES
from runs.families import get_family

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("family", FAMILIES)
def test_every_catalog_family_has_its_module(family):
    module = get_family(family)
    assert module.NAME == family
    assert module.__name__ == f"runs.families.{family}"
    assert get_family(family) is module


@pytest.mark.parametrize("name", ["weather", "", "FORECASTING", "worlds"])
def test_unknown_family_is_a_key_error(name):
    with pytest.raises(KeyError):
        get_family(name)


def test_importing_the_package_loads_no_family_module():
    code = (
        "import sys, runs.families\n"
        "loaded = [m for m in sys.modules if m.startswith('runs.families.') and m != 'runs.families.worlds']\n"
        "assert not loaded and 'lightgbm' not in sys.modules, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)
