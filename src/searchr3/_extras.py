"""Optional features and the pip extras that install them: a missing one is named in one line."""

from __future__ import annotations

import importlib
from types import ModuleType


class MissingExtra(ImportError):
    """An optional dependency is not installed; the message says which extra installs it."""


def require(extra: str, module: str) -> ModuleType:
    """Return the imported `module`, or raise MissingExtra naming `pip install 'searchr3[extra]'`.

    Only the module itself being absent is reported this way; an ImportError from inside an
    installed module (a broken install) is raised as it is.

    >>> require("report", "json").__name__
    'json'
    """
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name != module.split(".")[0]:
            raise
        raise MissingExtra(f"{module} is not installed; this feature needs the {extra!r} extra: "
                           f"pip install 'searchr3[{extra}]'", name=e.name) from None


def pyplot(extra: str) -> ModuleType:
    """matplotlib.pyplot drawing to files only (the Agg backend: no display needed), or MissingExtra."""
    matplotlib = require(extra, "matplotlib")
    matplotlib.use("Agg")
    return importlib.import_module("matplotlib.pyplot")
