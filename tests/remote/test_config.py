"""Which remote a command uses, and what the settings may not hold."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelbuild.errors import ManifestError, UserError
from modelbuild.manifest.project import load_project
from modelbuild.remote.config import redact, resolve, scrub


def settings(tmp_path: Path, text: str) -> Path:
    (tmp_path / "modelbuild.toml").write_text(text)
    return tmp_path


def test_flag_beats_environment_beats_settings(tmp_path: Path) -> None:
    table = {"url": "s3://from-settings/x", "push": True, "options": {"profile": "team"}}
    assert resolve(table, None, tmp_path, environ={}).url == "s3://from-settings/x"  # type: ignore[union-attr]
    assert resolve(table, None, tmp_path, environ={"MODELBUILD_REMOTE": "s3://from-env/x"}).url == "s3://from-env/x"  # type: ignore[union-attr]
    chosen = resolve(table, "file:///flag", tmp_path, environ={"MODELBUILD_REMOTE": "s3://from-env/x"})
    assert chosen is not None and chosen.url == "file:///flag" and chosen.push and chosen.options == {"profile": "team"}
    assert resolve(None, None, tmp_path, environ={}) is None


def test_push_from_the_environment_and_plain_folders(tmp_path: Path) -> None:
    config = resolve({"url": "shared", "push": False}, None, tmp_path, environ={"MODELBUILD_REMOTE_PUSH": "true"})
    assert config is not None and config.push and config.url == (tmp_path / "shared").as_uri()
    with pytest.raises(UserError, match="MODELBUILD_REMOTE_PUSH: expected true or false, got 'maybe'"):
        resolve({"url": "s3://b/p"}, None, tmp_path, environ={"MODELBUILD_REMOTE_PUSH": "maybe"})


def test_an_unknown_scheme_is_refused_naming_where_it_came_from(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"--remote: expected a URL fsspec can open .* got scheme 'bogus'"):
        resolve(None, "bogus://x", tmp_path, environ={})
    with pytest.raises(UserError, match="MODELBUILD_REMOTE: expected"):
        resolve(None, None, tmp_path, environ={"MODELBUILD_REMOTE": "nope://x"})


def test_credentials_in_the_settings_are_refused(tmp_path: Path) -> None:
    root = settings(
        tmp_path,
        '[remote]\nurl = "s3://b/p"\noptions = { key = "AKIA", client_kwargs = { aws_secret_access_key = "s" }, profile = "ok" }\n',
    )
    with pytest.raises(ManifestError) as caught:
        load_project(root)
    text = "\n".join(caught.value.problems)
    assert "remote.options.key: expected no credentials here" in text
    assert "remote.options.client_kwargs.aws_secret_access_key: expected no credentials here" in text
    assert "remote.options.profile:" not in text and len(caught.value.problems) == 2


def test_settings_table_is_checked_field_by_field(tmp_path: Path) -> None:
    root = settings(tmp_path, '[remote]\nurl = 3\npush = "yes"\nbucket = "x"\n')
    with pytest.raises(ManifestError) as caught:
        load_project(root)
    text = "\n".join(caught.value.problems)
    assert "modelbuild.toml: remote.bucket: unknown setting 'bucket'" in text
    assert "remote.url: expected a URL such as 's3://bucket/prefix'" in text and "got 3" in text
    assert "remote.push: expected true or false, got 'yes'" in text


def test_a_url_with_a_password_is_never_shown() -> None:
    assert redact("https://user:secret@host/cache") == "https://host/cache"
    assert redact("s3://bucket/prefix") == "s3://bucket/prefix"
    # An adversarial run found each of these shown in full or in part: a scheme in capitals,
    # a secret key holding "/" (AWS secret keys often do), a password holding "@".
    assert redact("S3://AKIAEXAMPLE:SuperSecret123@bucket/x") == "S3://bucket/x"
    assert redact("s3://AKIAEXAMPLE:Secret/With/Slash@bucket/x") == "s3://bucket/x"
    assert redact("s3://AKIAEXAMPLE:p@ss@bucket/x") == "s3://bucket/x"


def test_a_libraries_error_text_loses_the_urls_credentials() -> None:
    url = "ftp://user1:Pass/word@127.0.0.1:9/x"
    text = f"cannot open {url}: login failed for user1 with password Pass/word"
    scrubbed = scrub(text, url)
    assert "Pass/word" not in scrubbed and "user1" not in scrubbed and "ftp://127.0.0.1:9/x" in scrubbed
    assert scrub("no credentials here", "s3://bucket/x") == "no credentials here"
