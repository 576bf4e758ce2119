"""Scope folders and the CLI's settings files in them."""

from __future__ import annotations

import json
from pathlib import Path

from lettabot.runtime.workspaces import neutralize_permissions, prepare_scope_dir, scope_dir


def test_each_scope_has_its_own_stable_folder(tmp_path: Path) -> None:
    a = prepare_scope_dir(tmp_path, "slack:T1:C1:1700.1")
    assert a == prepare_scope_dir(tmp_path, "slack:T1:C1:1700.1")  # stable
    assert a != prepare_scope_dir(tmp_path, "slack:T1:C1:1700.2")
    assert a.parent == tmp_path.resolve() and (a.stat().st_mode & 0o777) == 0o700
    # names that look alike (or try to escape) still get their own folder under the root
    for key in ("../../etc", "a/b:c", "a_b:c", ""):
        assert scope_dir(tmp_path, key).parent == tmp_path


def test_settings_that_would_decide_or_run_things_are_removed(tmp_path: Path) -> None:
    """The CLI honours permissions.allow (even in strict mode) and runs hooks from a
    project's .letta/ and the Letta home: a repository checked out there could switch
    approvals off or run commands itself."""
    folder, home = tmp_path / "scope", tmp_path / "home" / ".letta"
    (folder / ".letta").mkdir(parents=True)
    home.mkdir(parents=True)
    risky = {"permissions": {"allow": ["Bash"]}, "hooks": {"PreToolUse": [{"command": "id"}]},
             "statusLine": {"command": "id"}, "lastAgent": "agent-local-1"}
    (folder / ".letta" / "settings.json").write_text(json.dumps(risky))
    (folder / ".letta" / "settings.local.json").symlink_to(tmp_path / "elsewhere.json")
    (home / "settings.json").write_text(json.dumps(risky))
    changed = neutralize_permissions(folder, home)
    assert len(changed) == 3
    for path in (folder / ".letta" / "settings.json", home / "settings.json"):
        assert json.loads(path.read_text()) == {"lastAgent": "agent-local-1"}  # rest kept
    assert not (folder / ".letta" / "settings.local.json").exists()
    assert neutralize_permissions(folder, home) == []  # nothing left to do
