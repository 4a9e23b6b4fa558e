"""Whether a Prefect API is configured is answered without importing Prefect only when Prefect could not say yes."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from poisonguard.pipelines.flows.api import no_prefect_settings_source

SERVER = "http://127.0.0.1:4999/api"
PROFILE = f'active = "mine"\n[profiles.mine]\nPREFECT_API_URL = "{SERVER}"\n'
BASE_ENVIRONMENT = {"PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_LOGGING_LEVEL": "WARNING"}

# name -> (extra environment, files in the working directory or under HOME ("~/..."), Prefect finds an API,
#          Prefect must be asked)
CASES = {
    "nothing": ({}, {}, False, False),
    "home set, no profiles": ({"PREFECT_HOME": "{tmp}/prefect-home"}, {}, False, False),
    "pyproject without prefect": ({}, {"pyproject.toml": '[project]\nname = "x"\n'}, False, False),
    "environment": ({"PREFECT_API_URL": SERVER}, {}, True, True),
    "dotenv": ({}, {".env": f"PREFECT_API_URL={SERVER}\n"}, True, True),
    "prefect.toml": ({}, {"prefect.toml": f'[api]\nurl = "{SERVER}"\n'}, True, True),
    "pyproject": ({}, {"pyproject.toml": f'[tool.prefect.api]\nurl = "{SERVER}"\n'}, True, True),
    "profile in ~/.prefect": ({}, {"~/.prefect/profiles.toml": PROFILE}, True, True),
    "profile in PREFECT_HOME": ({"PREFECT_HOME": "{tmp}/prefect-home"}, {"~/../prefect-home/profiles.toml": PROFILE},
                                True, True),
    # A variable Prefect reads: it picks the bundled "local" profile, which names a local server.
    "profile chosen by PREFECT_PROFILE": ({"PREFECT_PROFILE": "local"}, {}, True, True),
}
# Prefect reads ~/.prefect once, when imported: this layout gets a process of its own.
OWN_HOME = "profile in ~/.prefect"


def _lay_out(tmp: Path, name: str) -> tuple[dict, Path, Path]:
    extra, files, _, _ = CASES[name]
    root = tmp / name.replace(" ", "_").replace("~", "home")
    cwd, home = root / "work", root / "home"
    cwd.mkdir(parents=True)
    home.mkdir()
    for relative, text in files.items():
        path = home / relative[2:] if relative.startswith("~/") else cwd / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    environment = {**BASE_ENVIRONMENT, **{k: v.format(tmp=root) for k, v in extra.items()}}
    return environment, cwd, home


PREFECT_ANSWERS = """
import json, os, sys
from prefect.settings.models.root import Settings
answers = {}
for name, (environment, cwd, home) in json.loads(sys.stdin.read()).items():
    for key in [k for k in os.environ if k.upper().startswith("PREFECT_")]:
        del os.environ[key]
    os.environ.update(environment, HOME=home)
    os.chdir(cwd)
    answers[name] = Settings().api.url
print(json.dumps(answers))
"""


@pytest.fixture(scope="module")
def layouts(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("prefect-settings")
    return {name: _lay_out(tmp, name) for name in CASES}


def _ask_prefect(layouts: dict) -> dict:
    """What Prefect's own loader makes of each layout: a fresh ``Settings()`` each, HOME the first one's."""
    request = {name: (environment, str(cwd), str(home)) for name, (environment, cwd, home) in layouts.items()}
    home = next(iter(request.values()))[2]
    done = subprocess.run([sys.executable, "-c", PREFECT_ANSWERS], input=json.dumps(request), capture_output=True,
                          text=True, check=True, timeout=120, env={"PATH": "/usr/bin:/bin", "HOME": home})
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def prefect_answers(layouts):
    shared = {name: layout for name, layout in layouts.items() if name != OWN_HOME}
    return {**_ask_prefect(shared), **_ask_prefect({OWN_HOME: layouts[OWN_HOME]})}


@pytest.mark.parametrize("name", list(CASES))
def test_prefect_is_asked_whenever_it_could_name_an_api(name, layouts, prefect_answers):
    environment, cwd, home = layouts[name]
    _, _, finds_api, must_ask = CASES[name]
    assert (prefect_answers[name] is not None) is finds_api  # the layout means what it says
    # Never "no API" where Prefect finds one; Prefect not imported where nothing could name one.
    assert no_prefect_settings_source(environment, cwd, home, modules=()) is not must_ask


def test_imported_prefect_is_always_asked(tmp_path):
    assert no_prefect_settings_source({}, tmp_path, tmp_path, modules=())
    assert not no_prefect_settings_source({}, tmp_path, tmp_path, modules={"prefect"})


def test_unreadable_pyproject_asks_prefect(tmp_path):
    (tmp_path / "pyproject.toml").write_text("[tool.prefect\n", encoding="utf-8")
    assert not no_prefect_settings_source({}, tmp_path, tmp_path, modules=())


@pytest.mark.parametrize("variable", ["PREFECT_API_URL", "prefect_api_url", "PREFECT_API__URL", "PREFECT_TEST_MODE",
                                      "PREFECT_PROFILES_PATH", "PREFECT_CLOUD_API_URL"])
def test_any_other_prefect_variable_asks_prefect(variable, tmp_path):
    assert not no_prefect_settings_source({variable: "x"}, tmp_path, tmp_path, modules=())
    assert no_prefect_settings_source({"PREFECT_HOME": str(tmp_path), "PREFECT_LOGGING_LEVEL": "INFO"},
                                      tmp_path, tmp_path, modules=())
