"""The README keeps up with the code: every setting, role and architecture id is documented."""

from __future__ import annotations

from pathlib import Path

from sdrest.library.architectures import ARCHITECTURES, ROLES
from sdrest.settings import FIELDS

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def test_every_setting_is_documented() -> None:
    missing = [name for name in FIELDS if f"| `{name}` |" not in README]
    assert missing == []


def test_every_role_and_architecture_is_documented() -> None:
    missing = [name for name in (*ROLES, *ARCHITECTURES) if f"`{name}`" not in README]
    assert missing == []


def test_first_screen_has_the_two_commands() -> None:
    first_screen = "\n".join(README.splitlines()[:20])
    assert "./install.sh && .venv/bin/sdrest" in first_screen
    assert "./install.sh --dev && .venv/bin/python -m pytest" in first_screen
    ci = (Path(__file__).resolve().parent.parent / ".ci" / "run").read_text()
    assert "./install.sh --dev && .venv/bin/python -m pytest" in ci


def test_every_route_is_documented() -> None:

    from sdrest.app import create_app
    from sdrest.settings import load_settings

    app = create_app(load_settings({}, env={}))
    from tests.route_table import app_routes

    documented = [f"{method} {path.replace(':path}', '}')}" for method, path in app_routes(app.routes)]
    missing = [route for route in documented if f"`{route}`" not in README]
    assert missing == []
