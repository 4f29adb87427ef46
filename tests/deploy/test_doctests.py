"""Every example in the deploy package's docstrings runs and shows what it claims."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import rivulet.deploy

MODULES = sorted(
    ["rivulet.deploy"]
    + [name for _, name, _ in pkgutil.walk_packages(rivulet.deploy.__path__, "rivulet.deploy.")]
)


@pytest.mark.parametrize("module_name", MODULES)
def test_docstring_examples(module_name: str) -> None:
    module = importlib.import_module(module_name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
