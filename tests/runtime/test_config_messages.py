"""Issue 13: errors and warnings name what the user wrote, and suggest the closest key."""

from __future__ import annotations

from pathlib import Path

import pytest
from flask import Flask

from flask_peewee_pool import ConfigError, PeeweePool, connect
from flask_peewee_pool.integration import config
from flask_peewee_pool.ops.report import config_warnings


def test_misspelt_url_query_parameter_is_named() -> None:
    with pytest.raises(ConfigError) as info:
        connect("mysql://u:pw@127.0.0.1:1/db?max_conections=5")
    message = str(info.value)
    assert "'max_conections'" in message and "did you mean 'max_connections'?" in message
    assert "pw" not in message.replace("PyMySQL", "")


def test_misspelt_url_query_parameter_in_flask_settings(tmp_path: Path) -> None:
    app = Flask("typo")
    app.config.update(PEEWEE_POOL_DATABASE="mysql://u@127.0.0.1:1/db?max_conections=5",
                      PEEWEE_POOL_STATS_DIR=str(tmp_path))
    with pytest.raises(ConfigError) as info:
        PeeweePool(app)
    assert info.value.setting == "PEEWEE_POOL_DATABASE"
    assert "did you mean 'max_connections'?" in str(info.value)
    assert "connect_args" not in info.value.setting


def test_driver_parameters_close_to_a_pool_setting_still_work() -> None:
    # keepalives is libpq's, not a misspelt keepalive: accepted as a driver parameter.
    db = connect("postgresql://u@127.0.0.1:1/db?keepalives=1")
    try:
        assert db.pool.options.keepalive == 60.0
    finally:
        db.close_pool()


@pytest.mark.parametrize(("label", "expected"), [
    (config.flask_label, "PEEWEE_POOL_MAX_CONNECTIONS"),
    (config.dict_label("PEEWEE_POOL"), 'PEEWEE_POOL["MAX_CONNECTIONS"]'),
])
def test_unknown_key_suggests_the_key_as_the_user_spells_it(label, expected) -> None:
    with pytest.raises(ConfigError) as info:
        config.check_keys({"MAX_CONECTIONS": 5}, label)
    assert str(info.value).endswith(f"did you mean {expected}?")


def test_warnings_name_the_setting_the_user_writes() -> None:
    server = {"idle_timeout": 60.0, "idle_timeout_setting": "wait_timeout",
              "max_connections": 10}
    options = {"max_lifetime": 1800.0, "keepalive": 30.0, "max_connections": 20}
    flask_warnings = config_warnings(options, server, [], config.flask_label)
    assert any("set PEEWEE_POOL_MAX_LIFETIME below 60" in w for w in flask_warnings)
    assert any("lower PEEWEE_POOL_MAX_CONNECTIONS" in w for w in flask_warnings)
    django_warnings = config_warnings(options, server, [], config.dict_label("PEEWEE_POOL"))
    assert any('set PEEWEE_POOL["MAX_LIFETIME"] below 60' in w for w in django_warnings)
