"""Finding an app from a ``module:attribute`` string, as ``rivulet run`` and ``docs`` take."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

from rivulet.framework._app import App
from rivulet.framework._errors import ConfigurationError

__all__ = ["load_app"]


def load_app(target: str, *, search_path: Path | None = None) -> App:
    """Import ``module:attribute`` (or ``module`` holding exactly one App) and return the app.

    The current directory (or ``search_path``) is put first on ``sys.path``, so a
    service's own modules import the way ``python -m`` would find them.
    """
    module_name, _, attribute = target.partition(":")
    if not module_name:
        raise ConfigurationError(
            f"expected MODULE:ATTRIBUTE (e.g. shop.inventory:app), not {target!r}"
        )
    root = str(search_path or Path.cwd())
    if root not in sys.path:
        sys.path.insert(0, root)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise ConfigurationError(f"cannot import module {module_name!r}: {exc}") from exc
        raise
    if attribute:
        try:
            found = getattr(module, attribute)
        except AttributeError:
            raise ConfigurationError(
                f"module {module_name!r} has no attribute {attribute!r}"
            ) from None
        if not isinstance(found, App):
            raise ConfigurationError(f"{target} is a {type(found).__name__}, not a rivulet App")
        return found
    apps = [value for value in vars(module).values() if isinstance(value, App)]
    if len(apps) != 1:
        raise ConfigurationError(
            f"module {module_name!r} has {len(apps)} App objects; name one as {module_name}:NAME"
        )
    return apps[0]
