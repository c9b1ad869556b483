"""What the wheel and the sdist carry beside the code: the recipes as package data
(peerdistill.recipes), the files the tests read (MANIFEST.in), the licence."""

import fnmatch
import importlib.resources
import importlib.util
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def test_the_package_list_is_every_package_of_src_and_the_recipes():
    from setuptools import find_packages

    setup = PYPROJECT["tool"]["setuptools"]
    assert setup["package-dir"] == {"": "src", "peerdistill.recipes": "recipes"}
    assert sorted(setup["packages"]) == sorted(find_packages("src") + ["peerdistill.recipes"])


def test_every_file_of_recipes_is_package_data():
    patterns = PYPROJECT["tool"]["setuptools"]["package-data"]["peerdistill.recipes"]
    names = sorted(p.name for p in (ROOT / "recipes").iterdir() if p.is_file() and p.name != "__init__.py")
    assert len(names) >= 9
    assert [n for n in names if not any(fnmatch.fnmatch(n, pat) for pat in patterns)] == []


def test_the_installed_recipes_are_the_repositorys():
    if importlib.util.find_spec("peerdistill.recipes") is None:
        pytest.skip("peerdistill is not installed (PYTHONPATH=src): no peerdistill.recipes")
    shipped = importlib.resources.files("peerdistill.recipes")
    names = sorted(p.name for p in shipped.iterdir() if p.name.endswith(".yaml"))
    assert names == sorted(p.name for p in (ROOT / "recipes").glob("*.yaml"))
    for name in names:
        assert shipped.joinpath(name).read_bytes() == (ROOT / "recipes" / name).read_bytes()


def test_a_recipe_named_from_another_folder_names_the_shipped_copy(tmp_path, monkeypatch):
    from peerdistill.config import load_config
    from peerdistill.config.yaml_files import recipes_folder
    from peerdistill.errors import ConfigError

    if importlib.util.find_spec("peerdistill.recipes") is None:
        pytest.skip("peerdistill is not installed (PYTHONPATH=src): no peerdistill.recipes")
    shipped = Path(str(importlib.resources.files("peerdistill.recipes").joinpath("shapes.yaml"))).resolve()
    assert recipes_folder() == shipped.parent
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as caught:
        load_config("recipes/shapes.yaml")
    assert str(caught.value).endswith(f"the recipes are in '{shipped.parent}' (peerdistill train {shipped})")
    assert load_config(shipped, ["train.epochs=1"]).task == "segmentation"


def test_the_sdist_holds_what_the_tests_read():
    import re

    manifest = (ROOT / "MANIFEST.in").read_text(encoding="utf-8").splitlines()
    shipped = {"README.md", "pyproject.toml", "MANIFEST.in", "LICENSE", "src"}  # (setuptools ships these itself)
    shipped |= {line.split()[1] for line in manifest if line.split()[:1] in (["graft"], ["include"])}
    assert {"tests", "recipes"} <= shipped  # conftest.py and tests/__init__.py: not tests/test_*.py alone
    read = set()
    for test in sorted((ROOT / "tests").glob("*.py")):
        read |= set(re.findall(r'(?:parents\[1\]|parent\.parent|ROOT) / "([^"/]+)"', test.read_text(encoding="utf-8")))
    assert read and read <= shipped


def test_the_licence_is_an_spdx_expression_with_its_text():
    assert PYPROJECT["project"]["license"] == "Apache-2.0"  # a table stops building after 2027-02-18
    assert PYPROJECT["project"]["license-files"] == ["LICENSE"]
    assert PYPROJECT["build-system"]["requires"] == ["setuptools>=77"]  # the first to read an SPDX expression
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert "Apache License" in text and "Version 2.0, January 2004" in text and "END OF TERMS AND CONDITIONS" in text
