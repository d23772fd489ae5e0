"""Settings precedence: flag > SDREST_* environment > config file > default; bad values name the setting."""

from __future__ import annotations

from pathlib import Path

import pytest

from sdrest.settings import SettingsError, load_settings


def test_defaults_bind_to_localhost(tmp_path: Path) -> None:
    settings = load_settings({}, env={})
    assert (settings.host, settings.port) == ("127.0.0.1", 7860)
    assert settings.models_path == settings.data_dir / "models"


def test_precedence(tmp_path: Path) -> None:
    config = tmp_path / "sdrest.toml"
    config.write_text('port = 9000\nqueue_size = 5\nmodels_dir = "/srv/models"\n')
    env = {"SDREST_CONFIG": str(config), "SDREST_PORT": "9100"}
    settings = load_settings({"port": None}, env=env)
    assert (settings.port, settings.queue_size, settings.models_path) == (9100, 5, Path("/srv/models"))
    assert load_settings({"port": 9200}, env=env).port == 9200


@pytest.mark.parametrize(
    ("flags", "env", "message"),
    [
        ({}, {"SDREST_PORT": "http"}, "port"),
        ({"port": 0}, {}, "port"),
        ({}, {"SDREST_MAX_SIDE": "10"}, "max_side"),
    ],
)
def test_bad_values_name_the_setting(flags: dict, env: dict, message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        load_settings(flags, env=env)


def test_unknown_keys_in_the_config_file(tmp_path: Path) -> None:
    config = tmp_path / "sdrest.toml"
    config.write_text("prot = 1\n")
    with pytest.raises(SettingsError, match="unknown setting.*prot"):
        load_settings({"config": config}, env={})
