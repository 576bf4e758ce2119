"""Deploy files keep secrets where they belong and point at what exists (issue #24.6): the
database container gets only its own settings, the systemd unit's documentation is this
project's, and build-wheels writes DIST where install-wheels reads it, from any folder."""

from __future__ import annotations

import os
import re
import stat
import subprocess
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"


def test_the_database_container_gets_no_chat_tokens_or_provider_keys() -> None:
    postgres = yaml.safe_load((DEPLOY / "compose.yaml").read_text())["services"]["postgres"]
    assert "env_file" not in postgres  # lettabot.env holds the bot's tokens and keys
    assert postgres["environment"]
    assert all(key.startswith("POSTGRES_") for key in postgres["environment"]), postgres


def test_the_systemd_units_documentation_is_this_projects_and_installed_by_its_steps() -> None:
    unit = (DEPLOY / "systemd" / "lettabot.service").read_text()
    uris = [u for line in re.findall(r"^Documentation=(.*)$", unit, re.M) for u in line.split()]
    assert uris
    for uri in uris:
        found = re.fullmatch(r"file:///usr/share/doc/lettabot/([\w.-]+\.md)", uri)
        assert found, uri  # not the archived TypeScript project
        assert (ROOT / "docs" / found.group(1)).is_file(), uri
        assert re.search(rf"install .*/usr/share/doc/lettabot .*docs/{found.group(1)}", unit)


def test_build_wheels_writes_a_relative_dist_where_install_wheels_reads_it(
    tmp_path: Path,
) -> None:
    """Run from outside the repository, with a stand-in ``uv`` that records its arguments."""
    fake = tmp_path / "bin" / "uv"
    fake.parent.mkdir()
    fake.write_text(f'#!/bin/sh\necho "$PWD $*" >> {tmp_path}/uv-calls\n')
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    done = subprocess.run([str(DEPLOY / "docker" / "build-wheels"), "dist"], cwd=outside,
                          env={**os.environ, "PATH": f"{fake.parent}:{os.environ['PATH']}"},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    calls = (tmp_path / "uv-calls").read_text()
    assert f"--out-dir {outside}/dist" in calls, calls
    assert f"--output-file {outside}/dist/requirements.txt" in calls, calls
    assert (outside / "dist").is_dir()  # where `install-wheels dist VENV` run here reads
