"""The face API: the HTTP edge (`http`), galleries (`galleries`), the face pipeline (`pipeline`),
the models (`inference`) and what they all use (`ops`); imports flow in that order."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version


def _own_version() -> str:
    try:
        return version("face-api")
    except PackageNotFoundError:  # running from a source tree (e.g. inside a Bento) not installed
        import tomllib
        from pathlib import Path

        pyproject = Path(__file__).resolve().parent.parent / "pyproject.toml"
        try:
            return tomllib.loads(pyproject.read_text())["project"]["version"]
        except (OSError, KeyError, tomllib.TOMLDecodeError):
            return "0+unknown"


__version__ = _own_version()
