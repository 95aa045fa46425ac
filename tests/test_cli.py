"""The CLI as a user runs it: a real subprocess per command."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

EXE = str(Path(sys.executable).parent / "ordercast")


def run(*args: str, db: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [EXE, *args, "--database-url", db], capture_output=True, text=True, timeout=60, check=check
    )


def test_migrate_demo_tenants_apps(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path}/cli.db"
    assert "up to date" in run("migrate", db=db).stdout
    env_lines = run("demo", "--env", db=db).stdout.splitlines()
    exports = dict(line.removeprefix("export ").split("=", 1) for line in env_lines)
    assert set(exports) == {
        "OC_URL",
        "OC_WS",
        "OC_ADMIN_TOKEN",
        "OC_TENANT",
        "OC_LOCATION",
        "OC_APP",
        "OC_KEY",
        "OC_SECRET",
    }
    # The demo is created once: a second call prints the same credentials.
    again = run("demo", "--env", db=db).stdout.splitlines()
    assert again == env_lines
    tenant = json.loads(run("tenants", "create", "--name", "Pizza Co", db=db).stdout)
    assert tenant["id"].startswith("ten_")
    app = json.loads(
        run(
            "apps", "create", "--tenant", exports["OC_TENANT"], "--name", "KDS",
            "--kind", "kds", "--location", exports["OC_LOCATION"], db=db,
        ).stdout
    )  # fmt: skip
    assert app["kind"] == "kds" and app["secret"].startswith("ocs_")
    assert app["location_ids"] == [exports["OC_LOCATION"]]


def test_cli_errors_are_clear(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path}/cli.db"
    bad = run(
        "apps", "create", "--tenant", "ten_x", "--name", "n", "--kind", "robot", db=db, check=False
    )
    assert bad.returncode == 2
    assert "tenant ten_x not found" in bad.stderr
    wrong = run("migrate", db="mysql://nope", check=False)
    assert wrong.returncode == 2
    assert "unsupported database URL" in wrong.stderr
