"""supervisord's configuration for the stack's programs.

Why supervisord: a process that dies is started again while the others keep serving
(honcho, before it, stopped the whole stack when one process exited), with a growing
delay between attempts when it keeps dying at start, and every process's output goes to
one stream. The control socket lets an operator ask and act
(`supervisorctl -c var/supervisord.conf status`, `restart signal-2`); it is owner-only
and password-protected, the password new each run.
"""

from __future__ import annotations

import configparser
import io
import os
import secrets
import shlex
from pathlib import Path

from stack.programs import Program

# A process that stays up this long has started; one that dies sooner is retried after
# 1, 2, 3, … seconds, at most this many times, before supervisord gives up on it (FATAL;
# `supervisorctl start NAME` tries again).
START_SECONDS = 5
START_RETRIES = 10
STOP_WAIT_SECONDS = 15


def _environment(values: dict[str, str]) -> str:
    """supervisord's KEY="value",… syntax; `%` is its expansion character."""
    if any('"' in value for value in values.values()):
        raise ValueError(f"a double quote cannot be passed through supervisord: {values}")
    return ",".join(f'{key}="{value.replace("%", "%%")}"' for key, value in sorted(values.items()))


def render(programs: list[Program], var_dir: Path, repo_root: Path) -> str:
    """The whole configuration file."""
    config = configparser.RawConfigParser()
    config.optionxform = str  # type: ignore[assignment,method-assign]
    password = secrets.token_urlsafe(24)
    socket = var_dir / "supervisor.sock"
    config["unix_http_server"] = {
        "file": str(socket),
        "chmod": "0700",
        "username": "aifx",
        "password": password,
    }
    config["supervisord"] = {
        # In the foreground supervisord also writes its own lines (spawned, exited) to
        # the stream; the file keeps them for later.
        "nodaemon": "true",
        "logfile": str(var_dir / "supervisord.log"),
        "logfile_maxbytes": "5MB",
        "logfile_backups": "1",
        "loglevel": "info",
        "pidfile": str(var_dir / "supervisord.pid"),
        "directory": str(repo_root),
    }
    config["rpcinterface:supervisor"] = {
        "supervisor.rpcinterface_factory": "supervisor.rpcinterface:make_main_rpcinterface"
    }
    config["supervisorctl"] = {
        "serverurl": f"unix://{socket}",
        "username": "aifx",
        "password": password,
    }
    for priority, program in enumerate(programs, start=1):
        config[f"program:{program.name}"] = {
            "command": shlex.join(program.command),
            "directory": str(repo_root),
            "environment": _environment(program.environment),
            "priority": str(priority),
            "autorestart": "true" if program.keep_running else "false",
            "startsecs": str(START_SECONDS if program.keep_running else 0),
            "startretries": str(START_RETRIES),
            "stopsignal": "TERM",
            "stopwaitsecs": str(STOP_WAIT_SECONDS),
            "stopasgroup": "true",
            "killasgroup": "true",
            # One stream: every process writes to supervisord's own output.
            "redirect_stderr": "true",
            "stdout_logfile": "/dev/stdout",
            "stdout_logfile_maxbytes": "0",
        }
    text = io.StringIO()
    config.write(text)
    return text.getvalue()


def write(programs: list[Program], var_dir: Path, repo_root: Path) -> Path:
    """var/supervisord.conf, readable by its owner only (it holds the password)."""
    path = var_dir / "supervisord.conf"
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(render(programs, var_dir, repo_root))
    os.chmod(path, 0o600)
    return path
