"""A third-party adapter owns its settings as the built-in ones do: an installed package
registering ``lettabot.settings`` and ``lettabot.adapters`` entry points gets a ``[teams]``
section validated with key, problem and fix, env overrides, check-config's listing and the
generated example — the core names no platform."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from lettabot.testing.letta_home import LettaHome

LETTABOT = [sys.executable, "-m", "lettabot.runtime.cli"]

SETTINGS = '''
from typing import Self
from pydantic import Field, SecretStr, model_validator
from lettabot.runtime.config import ChatAdapterSettings, is_blank, missing


class TeamsConfig(ChatAdapterSettings):
    """Microsoft Teams (an example third-party adapter)."""

    enabled: bool = False
    """Run the Teams adapter. Needs app_password."""
    app_password: SecretStr | None = Field(default=None, examples=["teams-secret"])
    """The bot's app password. Prefer LETTABOT_TEAMS__APP_PASSWORD."""
    tenant: str = "common"
    """Which tenant's users may reach the bot."""

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.enabled and is_blank(self.app_password):
            return self.raise_problems([missing("app_password", "teams.enabled = true")])
        return self
'''


@pytest.fixture
def teams_package(tmp_path: Path) -> Path:
    """An installed (on PYTHONPATH, with dist-info) package providing the adapter."""
    site = tmp_path / "site"
    pkg = site / "lettabot_teams"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(
        "def create_adapter(config, bot):\n    raise RuntimeError('not in this test')\n")
    (pkg / "settings.py").write_text(SETTINGS)
    info = site / "lettabot_teams-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: lettabot-teams\n"
                                   "Version: 0.1\n")
    (info / "entry_points.txt").write_text(
        "[lettabot.settings]\nteams = lettabot_teams.settings:TeamsConfig\n\n"
        "[lettabot.adapters]\nteams = lettabot_teams:create_adapter\n")
    return site


def _cli(*args: str, site: Path, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("LETTABOT_")}
    full.update(env, PYTHONPATH=str(site))
    return subprocess.run([*LETTABOT, *args], cwd=cwd, env=full, capture_output=True,
                          text=True, timeout=120)


def test_a_third_party_section_is_validated_listed_and_documented(
    teams_package: Path, tmp_path: Path, letta_home: LettaHome,
) -> None:
    config = tmp_path / "lettabot.toml"
    config.write_text('[access]\nopen = true\n[teams]\nenabled = true\ntenant = "contoso"\n')
    bad = _cli("check-config", "--config", str(config), site=teams_package, cwd=tmp_path)
    assert bad.returncode == 2
    assert ("teams.app_password: is not set but teams.enabled = true — set "
            "LETTABOT_TEAMS__APP_PASSWORD") in bad.stderr
    assert "Traceback" not in bad.stderr
    good = _cli("check-config", "--verbose", "--config", str(config), site=teams_package,
                cwd=tmp_path,
                LETTABOT_TEAMS__APP_PASSWORD="teams-pass-123", **letta_home.env)
    assert good.returncode == 0, good.stderr
    assert "[teams]" in good.stdout and 'tenant = "contoso"' in good.stdout
    assert "teams-pass-123" not in good.stdout + good.stderr  # a SecretStr: masked
    assert "# adapter teams: lettabot-teams 0.1" in good.stdout
    example = _cli("example-config", site=teams_package, cwd=tmp_path)
    assert example.returncode == 0
    assert "[teams]\n# Run the Teams adapter. Needs app_password.\n# enabled = false" in (
        example.stdout)
    assert '# app_password = "teams-secret"' in example.stdout


def test_a_section_for_an_adapter_that_is_not_installed_says_what_to_install(
    tmp_path: Path,
) -> None:
    config = tmp_path / "lettabot.toml"
    config.write_text("[zulip]\nenabled = true\n")
    done = _cli("check-config", "--config", str(config), site=tmp_path, cwd=tmp_path)
    assert done.returncode == 2
    assert "zulip: unknown key: no installed adapter reads this section" in done.stderr
