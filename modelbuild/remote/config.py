"""Which remote a command uses: ``--remote URL``, else ``MODELBUILD_REMOTE``, else the
``[remote]`` table of the project settings. Credentials never come from here: each filesystem
finds its own in its standard places (the AWS environment and config files, gcloud's), so no
manifest, report or log can carry one."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from modelbuild.errors import Location, UserError, problem, table_problems

ENVIRONMENT = "MODELBUILD_REMOTE"
PUSH_ENVIRONMENT = "MODELBUILD_REMOTE_PUSH"
KEYS = {"url", "push", "options"}
URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)(.*)$", re.DOTALL)  # scheme://, then the rest
# Option names that hold a secret. Refused in modelbuild.toml: a settings file is committed.
SECRET_OPTIONS = re.compile(r"(secret|password|passwd|token|credential|private_key|^key$|access_key)", re.IGNORECASE)


@dataclass(frozen=True)
class RemoteConfig:
    url: str
    push: bool = False
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def display(self) -> str:
        """The URL without any user:password part, for messages and reports."""
        return redact(self.url)


def redact(url: str) -> str:
    """``url`` without its user:password part. Everything up to the last ``@`` counts as that
    part: a secret key may hold ``/`` or ``@`` unescaped (AWS secret keys often hold ``/``), and
    showing a path shorter than it is costs less than showing a secret."""
    match = URL.match(url)
    if match is None or "@" not in match.group(2):
        return url
    return match.group(1) + match.group(2).rsplit("@", 1)[1]


def scrub(text: str, url: str) -> str:
    """``text`` (a library's error message, which may quote the URL it was given) without the
    URL's user:password part, nor its user or password alone."""
    match = URL.match(url)
    if match is None or "@" not in match.group(2):
        return text
    userinfo = match.group(2).rsplit("@", 1)[0]
    text = text.replace(url, redact(url))
    for secret in sorted({userinfo, *userinfo.split(":", 1)}, key=len, reverse=True):
        if len(secret) >= 4:
            text = text.replace(secret, "***")
    return text


def check_settings(table: Any, where: str) -> list[str]:
    """Problems of a ``[remote]`` settings table, each naming the field."""
    is_table, problems = table_problems(table, "remote", KEYS, where, "a table (url, push, options)")
    if not is_table:
        return problems
    url = table.get("url")
    if not isinstance(url, str) or not url.strip():
        problems.append(problem(Location(where, field="remote.url"), f"expected a URL such as 's3://bucket/prefix' or 'file:///shared/disk', got {url!r}"))
    if not isinstance(table.get("push", False), bool):
        problems.append(problem(Location(where, field="remote.push"), f"expected true or false, got {table['push']!r}"))
    options = table.get("options", {})
    if not isinstance(options, dict):
        problems.append(problem(Location(where, field="remote.options"), f"expected a table of filesystem options, got {options!r}"))
    else:
        for path in _secret_paths(options, "remote.options"):
            problems.append(
                problem(
                    Location(where, field=path),
                    "expected no credentials here (the settings file is shared); put them where the filesystem looks "
                    "(AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or ~/.aws/credentials, a profile name in options.profile)",
                )
            )
    return problems


def _secret_paths(options: Mapping[str, Any], prefix: str) -> list[str]:
    found = []
    for key, value in options.items():
        path = f"{prefix}.{key}"
        if isinstance(value, dict):
            found += _secret_paths(value, path)
        elif SECRET_OPTIONS.search(str(key)):
            found.append(path)
    return found


def resolve(
    settings: dict[str, Any] | None, flag: str | None, root: Path, environ: Mapping[str, str] = os.environ, where: str = "settings"
) -> RemoteConfig | None:
    """The remote this command uses, or None. ``--remote`` and the environment choose the URL;
    ``push`` and ``options`` come from the settings (``MODELBUILD_REMOTE_PUSH`` overrides push,
    so a CI job can push without a settings file of its own)."""
    table = settings or {}
    chosen = [(source, url) for source, url in (("--remote", flag), (ENVIRONMENT, environ.get(ENVIRONMENT)), (f"{where}: remote.url", table.get("url"))) if url]
    if not chosen:
        return None
    source, url = chosen[0]
    _check_scheme(url, source)
    push = table.get("push", False)
    override = environ.get(PUSH_ENVIRONMENT)
    if override is not None:
        if override.lower() not in ("1", "0", "true", "false", "yes", "no"):
            raise UserError(f"{PUSH_ENVIRONMENT}: expected true or false, got {override!r}")
        push = override.lower() in ("1", "true", "yes")
    return RemoteConfig(url=_absolute(url, root), push=push, options=dict(table.get("options", {})))


def _absolute(url: str, root: Path) -> str:
    """A plain folder path is a file:// remote, relative to the project root."""
    if "://" in url:
        return url
    return (root / url).resolve().as_uri()


def _check_scheme(url: str, source: str) -> None:
    """A scheme fsspec knows, said before anything is built."""
    if "://" not in url:
        return
    scheme = url.split("://", 1)[0]
    from fsspec.registry import known_implementations

    if scheme not in known_implementations and scheme not in ("file", "local"):
        raise UserError(f"{source}: expected a URL fsspec can open (s3://, gs://, file://), got scheme {scheme!r} in {redact(url)!r}")
