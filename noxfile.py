"""Version matrix: the framework-facing suites on the lowest and newest supported releases.

    .venv/bin/nox                       # both sessions
    .venv/bin/nox -s "frameworks(lowest)"

Only the folders that touch Flask, Werkzeug, Django or prometheus_client run here (the
pool engine does not import them): the Flask, FlaskDB, Django, CLI, metrics and compat
suites and the integration-layer tests. The databases are the suite's usual ones
(``FPP_MYSQL_URL`` / ``FPP_POSTGRES_URL`` or local servers); set ``FPP_POOL_USER`` as for
any run. The lowest pins are the floors declared in pyproject.toml.
"""

from __future__ import annotations

import os

import nox

nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["frameworks"]

#: The supported floors (pyproject.toml) and the newest releases (no pin).
VERSIONS = {
    # Flask 2.3.0-2.3.2 cannot make an app whose import name's package does not exist
    # (Flask("shop.web")): 2.3.3 fixed it, and needs Werkzeug 2.3.7.
    "lowest": ["Flask==2.3.3", "Werkzeug==2.3.7", "Django==4.2", "prometheus_client==0.17.0"],
    "newest": ["Flask", "Werkzeug", "Django", "prometheus_client"],
}

SUITES = ["tests/flask", "tests/flaskdb", "tests/django", "tests/cli", "tests/metrics",
          "tests/compat", "tests/runtime", "tests/attribution", "tests/security",
          "tests/gunicorn/test_prometheus.py"]


@nox.session
@nox.parametrize("versions", list(VERSIONS))
def frameworks(session: nox.Session, versions: str) -> None:
    """Install the package with the test extra, pin the frameworks, run their suites."""
    session.install("-e", ".[test]")
    if versions == "newest":
        session.install("--upgrade", *VERSIONS[versions])
    else:
        session.install(*VERSIONS[versions])
    session.run("python", "-c", "import flask, werkzeug, django, prometheus_client, "
                "importlib.metadata as m; print('versions:', *(f'{n}=={m.version(n)}' "
                "for n in ('Flask', 'Werkzeug', 'Django', 'prometheus_client')))")
    session.run("python", "-m", "pytest", "-q", "-p", "no:cacheprovider", *SUITES,
                *session.posargs, env={"FPP_REQUIRE_DB": os.environ.get("FPP_REQUIRE_DB",
                                                                        "")})
