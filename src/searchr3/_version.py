"""The one version string: the package's `__version__`; pyproject.toml reads it from here."""

__version__ = "0.1.0"
