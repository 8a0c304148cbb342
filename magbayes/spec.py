"""Model specs: plain TOML files a clinician can read, copy and edit.

A spec names its model (``model = "progression"``) and holds tables that the model's
module reads (``[outcome]``, ``[covariates]``, ``[treatments]``, ``[early_sural]``,
``[priors]``, ``[sampler]``, ...). Built-in specs live in the repository's ``models/``
folder (shipped inside the wheel as ``magbayes/_specs``); ``magbayes fit NAME`` finds
them by name, and any other path to a ``.toml`` file works too.
"""

from __future__ import annotations

import copy
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from magbayes.errors import SpecError


def spec_dirs() -> list[Path]:
    """Folders searched for built-in specs, in order (repository checkout first)."""
    here = Path(__file__).resolve().parent
    return [here.parent / "models", here / "_specs"]


def builtin_spec_names() -> list[str]:
    """Names of the specs shipped with magbayes (``progression``, ``worsening``, ...)."""
    names: set[str] = set()
    for folder in spec_dirs():
        if folder.is_dir():
            names.update(p.stem for p in folder.glob("*.toml"))
    return sorted(names)


def resolve_spec_path(name_or_path: str | Path) -> Path:
    """Turn a spec name (``"progression"``) or a path into an existing file path.

    Raises
    ------
    SpecError
        When no such file or built-in spec exists.
    """
    candidate = Path(name_or_path)
    if candidate.suffix == ".toml" or candidate.exists():
        if candidate.is_file():
            return candidate
        raise SpecError(f"model spec file not found: {candidate}")
    for folder in spec_dirs():
        path = folder / f"{name_or_path}.toml"
        if path.is_file():
            return path
    raise SpecError(
        f"unknown model spec {str(name_or_path)!r}: give a path to a .toml file or one of "
        f"{', '.join(builtin_spec_names()) or '(none installed)'}"
    )


def deep_merge(base: dict, override: dict) -> dict:
    """Merge ``override`` into a copy of ``base``, table by table."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


@dataclass(frozen=True)
class Spec:
    """A resolved model spec.

    Attributes
    ----------
    model : str
        Which model module reads it (``progression``, ``worsening``, ``response``).
    data : dict
        The whole spec, with the model's defaults filled in.
    path : str
        Where it was read from (empty for a spec built in code).
    is_builtin : bool
        Read from a spec shipped with magbayes (by name, or by its path under
        :func:`spec_dirs`), its ``[covariates]`` not replaced by overrides. A covariate such
        a spec names but a cohort lacks is left out (and said so); one named by the user's
        own spec is an error (CONTRACT.md section 2).
    """

    model: str
    data: dict[str, Any]
    path: str = ""
    text: str = field(default="", compare=False, repr=False)
    is_builtin: bool = False

    def __getitem__(self, key: str) -> Any:
        return self.data[key]

    def get(self, key: str, default: Any = None) -> Any:
        """Top-level table or value, or ``default``."""
        return self.data.get(key, default)

    def section(self, key: str) -> dict[str, Any]:
        """A top-level table (empty dict when absent)."""
        value = self.data.get(key, {})
        if not isinstance(value, dict):
            raise SpecError(f"spec {self.path or self.model}: [{key}] must be a table")
        return value

    def with_overrides(self, overrides: dict[str, Any]) -> Spec:
        """A copy with some tables or values replaced (used by sensitivity grids), checked.

        Raises
        ------
        SpecError
            When the result is not a valid spec of its model (:func:`checked`).
        """
        spec = Spec(
            model=self.model,
            data=deep_merge(self.data, overrides),
            path=self.path,
            text=self.text,
            is_builtin=self.is_builtin and "covariates" not in overrides,
        )
        return checked(spec)


def is_shipped(path: Path) -> bool:
    """True when ``path`` is one of the specs shipped with magbayes (under :func:`spec_dirs`)."""
    folder = path.resolve().parent
    return any(folder == d.resolve() for d in spec_dirs())


def checked(spec: Spec) -> Spec:
    """The spec, once its tables and keys are checked against its model's schema.

    The one check every command passes through (:func:`magbayes.fit.resolve_spec` and
    :meth:`Spec.with_overrides` call it): unknown tables and keys (with the closest valid
    one), wrong types and values out of range, all reported at once.

    Raises
    ------
    SpecError
        Naming the spec file, the table and the key.
    """
    from magbayes.spec_schema import check_spec

    check_spec(spec.model, spec.data, spec.path or f"the {spec.model} spec")
    return spec


def load_spec(name_or_path: str | Path, overrides: dict[str, Any] | None = None) -> Spec:
    """Read a spec by built-in name or path, fill the model's defaults, apply overrides.

    Parameters
    ----------
    name_or_path : str or pathlib.Path
        ``"progression"``, ``"worsening"``, ``"response"`` or a path to a ``.toml`` file.
    overrides : dict, optional
        Nested values that replace those in the file (``{"sampler": {"draws": 200}}``).

    Returns
    -------
    Spec
    """
    path = resolve_spec_path(name_or_path)
    text = path.read_text(encoding="utf-8")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise SpecError(f"model spec {path} is not valid TOML: {err}") from err
    model = data.get("model")
    if not isinstance(model, str):
        raise SpecError(f"model spec {path}: needs a top-level 'model = \"...\"' line")
    builtin = is_shipped(path) and "covariates" not in (overrides or {})
    if overrides:
        data = deep_merge(data, overrides)
    return Spec(model=model, data=data, path=str(path), text=text, is_builtin=builtin)
