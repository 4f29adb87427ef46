"""Reading ``deploy/k8s/services.toml`` into a :class:`DeployConfig` (at the edge).

::

    cluster = "rivulet"          # top-level keys: DeployConfig fields
    out = "base/generated"       # where `rivulet k8s render` writes, relative to this file

    [topics]                     # TopicDefaults
    partitions = 6

    [defaults.scaling]           # defaults of every [[service]]
    lag_threshold = 100
    [defaults.resources]
    memory_limit = "512Mi"

    [[service]]                  # ServiceOptions, one table per app, in render order
    app = "shop.orders:app"
    api_port = 8080
    env = { SHOP_HTTP = "0.0.0.0:8080" }
    [service.scaling]
    max_replicas = 3
"""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rivulet.deploy._errors import DeployError
from rivulet.deploy._model import DeployConfig, Resources, Scaling, ServiceOptions, TopicDefaults

__all__ = ["ConfigFile", "load_config"]

_NESTED = {"resources": Resources, "scaling": Scaling}


@dataclass(frozen=True, slots=True)
class ConfigFile:
    """The configuration and where its file says manifests go."""

    config: DeployConfig
    out: Path


def load_config(path: Path) -> ConfigFile:
    """Parse ``path``; errors name the file and the key."""
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise DeployError(f"{path} does not exist; pass --config FILE or name apps") from None
    except tomllib.TOMLDecodeError as exc:
        raise DeployError(f"{path} is not valid TOML: {exc}") from None
    where = str(path)
    out = Path(str(data.pop("out", "generated")))
    topics = _build(TopicDefaults, data.pop("topics", {}), f"{where} [topics]")
    defaults = data.pop("defaults", {})
    _reject_unknown(defaults, set(_NESTED), f"{where} [defaults]")
    services = tuple(
        _service(entry, defaults, f"{where} [[service]] #{index + 1}")
        for index, entry in enumerate(data.pop("service", []))
    )
    fixed = {"services": services, "topics": topics}
    for key, cls in _NESTED.items():
        fixed[f"default_{key}"] = _build(cls, defaults.get(key, {}), f"{where} [defaults.{key}]")
    config: DeployConfig = _build(DeployConfig, {**data, **fixed}, where)
    return ConfigFile(config, out if out.is_absolute() else path.parent / out)


def _service(entry: Mapping[str, Any], defaults: Mapping[str, Any], where: str) -> ServiceOptions:
    values = dict(entry)
    for key, cls in _NESTED.items():
        base = defaults.get(key, {})
        _reject_unknown(base, _field_names(cls), f"{where} defaults.{key}")
        values[key] = _build(cls, {**base, **values.get(key, {})}, f"{where} {key}")
    if "egress_ports" in values:
        values["egress_ports"] = tuple(values["egress_ports"])
    if "env" in values and not isinstance(values["env"], Mapping):
        raise DeployError(f'{where}: env must be a table of NAME = "value"')
    options: ServiceOptions = _build(ServiceOptions, values, where)
    return options


def _build(cls: Any, values: Mapping[str, Any], where: str) -> Any:
    if not isinstance(values, Mapping):
        raise DeployError(f"{where}: expected a table")
    _reject_unknown(values, _field_names(cls), where)
    try:
        return cls(**values)
    except TypeError as exc:
        raise DeployError(f"{where}: {exc}") from None
    except DeployError as exc:
        raise DeployError(f"{where}: {exc}") from None


def _field_names(cls: Any) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def _reject_unknown(values: Mapping[str, Any], known: set[str], where: str) -> None:
    unknown = sorted(set(values) - known)
    if unknown:
        raise DeployError(f"{where}: unknown keys {unknown}; known: {sorted(known)}")
