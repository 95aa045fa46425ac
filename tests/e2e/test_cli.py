"""The CLI as a user runs it: a real subprocess per command."""

from __future__ import annotations

import json
import os
import socket
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


def test_accounts_create_and_list(tmp_path: Path) -> None:
    """`ordercast accounts create` asks for the password (here on stdin, as a terminal
    prompt would), stores an argon2 hash, and the login works at the token endpoint."""
    import asyncio
    import os

    from ordercast.runtime import Runtime
    from ordercast.settings import Settings

    db = f"sqlite:///{tmp_path}/cli.db"
    exports = dict(
        line.removeprefix("export ").split("=", 1)
        for line in run("demo", "--env", db=db).stdout.splitlines()
    )
    env = {**os.environ, "ORDERCAST_ARGON2_MEMORY_KIB": "1024", "ORDERCAST_ARGON2_TIME_COST": "1"}
    made = subprocess.run(
        [EXE, "accounts", "create", "--tenant", exports["OC_TENANT"], "--username", "pos-1",
         "--role", "staff", "--location", exports["OC_LOCATION"], "--database-url", db],
        input="secret-password-1\nsecret-password-1\n", capture_output=True, text=True,
        timeout=60, env=env, check=True,
    )  # fmt: skip
    # The prompts ("Password: Repeat for confirmation: ") precede the JSON on stdout.
    account = json.loads(made.stdout[made.stdout.index("{") :])
    assert account["roles"] == ["staff"] and account["location_ids"] == [exports["OC_LOCATION"]]
    assert "secret-password-1" not in made.stdout
    listed = run("accounts", "list", "--tenant", exports["OC_TENANT"], db=db).stdout
    assert [json.loads(line)["username"] for line in listed.splitlines()] == ["pos-1"]
    bad = subprocess.run(
        [EXE, "accounts", "create", "--tenant", exports["OC_TENANT"], "--username", "x",
         "--role", "chef", "--password", "long-enough-1", "--database-url", db],
        capture_output=True, text=True, timeout=60, env=env,
    )  # fmt: skip
    assert bad.returncode == 2 and "unknown roles chef" in bad.stderr

    async def login() -> dict[str, object]:
        rt = await Runtime.open(
            Settings(database_url=db, argon2_memory_kib=1024, argon2_time_cost=1)
        )
        try:
            app = await rt.directory.authenticate_basic(exports["OC_KEY"], exports["OC_SECRET"])
            assert rt.accounts is not None
            return await rt.accounts.password_grant(app, "pos-1", "secret-password-1", "read")
        finally:
            await rt.close()

    tokens = asyncio.run(login())
    assert tokens["UUID"] == account["id"]


def test_demo_env_follows_the_servers_configuration(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path}/cli.db"
    out = run("demo", "--env", "--http-port", "18123", "--ws-port", "16123", db=db).stdout
    exports = dict(line.removeprefix("export ").split("=", 1) for line in out.splitlines())
    assert exports["OC_URL"] == "http://127.0.0.1:18123"
    assert exports["OC_WS"] == "ws://127.0.0.1:16123"
    env = {**os.environ, "ORDERCAST_HTTP_PORT": "18124", "ORDERCAST_WS_PORT": "16124"}
    out = subprocess.run(
        [EXE, "demo", "--env", "--database-url", db], capture_output=True, text=True, env=env,
        timeout=60, check=True,
    ).stdout  # fmt: skip
    assert "export OC_URL=http://127.0.0.1:18124" in out.splitlines()
    assert "export OC_WS=ws://127.0.0.1:16124" in out.splitlines()


def test_run_fails_in_one_line_when_a_port_is_taken(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path}/cli.db"
    for flag, variable in (
        ("--http-port", "ORDERCAST_HTTP_PORT"),
        ("--ws-port", "ORDERCAST_WS_PORT"),
    ):
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            other = "0"
            args = [
                "run",
                flag,
                str(port),
                "--http-port" if flag == "--ws-port" else "--ws-port",
                other,
            ]
            result = run(*args, db=db, check=False)
        assert result.returncode == 2
        assert result.stdout == ""  # no banner, no credentials before the failure
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert f"127.0.0.1:{port}" in lines[0] and "in use" in lines[0]
        assert flag in lines[0] and variable in lines[0]


def test_run_help_shows_defaults_and_environment_variables() -> None:
    text = subprocess.run(
        [EXE, "run", "--help"], capture_output=True, text=True, timeout=60, check=True,
        env={**os.environ, "COLUMNS": "200"},
    ).stdout  # fmt: skip
    for variable, default in (
        ("ORDERCAST_HOST", "127.0.0.1"),
        ("ORDERCAST_HTTP_PORT", "8080"),
        ("ORDERCAST_WS_PORT", "6001"),
        ("ORDERCAST_DATABASE_URL", "sqlite:///./ordercast.db"),
        ("ORDERCAST_BUS_URL", "memory://"),
        ("ORDERCAST_LOG_JSON", "text"),
    ):
        assert variable in text and default in text, variable


def test_apps_update_changes_settings(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path}/cli.db"
    exports = dict(
        line.removeprefix("export ").split("=", 1)
        for line in run("demo", "--env", db=db).stdout.splitlines()
    )
    app = json.loads(
        run("apps", "update", exports["OC_APP"], "--set", "client_events=true",
            "--name", "Web", db=db).stdout
    )  # fmt: skip
    assert app["settings"]["client_events"] is True and app["name"] == "Web"
    assert app["location_ids"] == [exports["OC_LOCATION"]]
    app = json.loads(
        run("apps", "update", exports["OC_APP"], "--unset", "client_events", db=db).stdout
    )
    assert app["settings"] == {}
    bad = run("apps", "update", exports["OC_APP"], "--set", "client_events=1", db=db, check=False)
    assert bad.returncode == 2 and "client_events must be true or false" in bad.stderr
