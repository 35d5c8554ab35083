"""Paths that climb out, folders modelbuild must never delete, files that are not files.

Every case runs the command a user would and asserts the exit code, the message, and that
nothing outside the project (and nothing of the user's inside it) changed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from modelbuild.store.lock import build_lock
from tests.conftest import run_cli
from tests.test_reliability import tiny_project


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file() and "__pycache__" not in p.parts}


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    return tiny_project(tmp_path / "project")


@pytest.mark.parametrize(
    "setting, message",
    [
        ('out_dir = ""', "out_dir: expected a folder inside the project, got '', which is the project root itself"),
        ('out_dir = "."', "out_dir: expected a folder inside the project, got '.', which is the project root itself"),
        ('out_dir = "manifests/.."', "out_dir: expected a folder inside the project, got 'manifests/..', which is the project root itself"),
        ('out_dir = ".."', "out_dir: expected a folder inside the project ("),
        ('out_dir = "/tmp"', "out_dir: expected a folder inside the project ("),
        ('cache_dir = "../elsewhere"', "cache_dir: expected a folder inside the project ("),
        ('cache_dir = "build"', "out_dir: expected out_dir and cache_dir to be separate folders, got 'build' and 'build'"),
        ('cache_dir = "build/cache"', "out_dir: expected out_dir and cache_dir to be separate folders"),
        ('out_dir = "manifests"', "out_dir: expected a folder that holds no manifests, got"),
        ("out_dir = 3", "out_dir: expected a folder path (a string), got 3"),
    ],
)
@pytest.mark.parametrize("command", ["check", "clean"])
def test_out_dir_and_cache_dir_must_be_folders_of_their_own_inside_the_project(tiny: Path, setting: str, message: str, command: str) -> None:
    settings = tiny / "modelbuild.toml"
    settings.write_text(settings.read_text().replace('cache_dir = "cache"\nout_dir = "build"\n', "") + "\n")
    settings.write_text(setting + "\n" + settings.read_text())
    before = tree(tiny.parent)
    result = run_cli(tiny, command, *(["manifests"] if command == "check" else []))
    if command == "clean" and "manifests" in setting:
        assert result.returncode == 0 or result.returncode == 2  # clean reads no manifests; it must still delete nothing of the user's
    else:
        assert result.returncode == 2, result.stdout + result.stderr
        assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert tree(tiny.parent) == before  # the project, and the folder around it, untouched


def test_clean_leaves_a_folder_modelbuild_did_not_make(tiny: Path) -> None:
    (tiny / "build").mkdir()
    (tiny / "build" / "thesis.tex").write_text("three years of work")
    result = run_cli(tiny, "clean")
    assert result.returncode == 2 and "has no .modelbuild marker" in result.stderr
    assert (tiny / "build" / "thesis.tex").read_text() == "three years of work"
    build = run_cli(tiny, "build", "manifests", "--no-bench")
    assert build.returncode == 2 and "already holds files modelbuild did not write" in build.stderr


def test_clean_waits_for_a_running_build(tiny: Path) -> None:
    (tiny / "build").mkdir()
    (tiny / "build" / ".modelbuild").write_text("")
    held = threading.Event()
    release = threading.Event()

    def hold() -> None:
        with build_lock(tiny / "cache", lambda m: None):
            held.set()
            release.wait(30)

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait(10)
    clean = subprocess.Popen([sys.executable, "-m", "modelbuild", "clean"], cwd=tiny, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(2)
    assert clean.poll() is None and (tiny / "build").exists()  # waiting, nothing deleted under the build
    release.set()
    holder.join()
    out, err = clean.communicate(timeout=60)
    assert clean.returncode == 0 and "waiting for another modelbuild build" in err
    assert not (tiny / "build").exists()


@pytest.mark.parametrize("kind", ["fifo", "device", "link out", "link to device"])
def test_a_weights_path_that_is_not_a_project_file_is_refused_at_check(tiny: Path, kind: str, tmp_path: Path) -> None:
    weights = tiny / "weights" / "odd.safetensors"
    if kind == "fifo":
        os.mkfifo(weights)
        expected = "expected a regular file, got a named pipe (FIFO)"
    elif kind == "device":
        weights.symlink_to("/dev/zero")
        expected = "expected a regular file, got a character device"
    elif kind == "link out":
        secret = tmp_path / "secret.safetensors"
        secret.write_bytes(b"the user's private key")
        weights.symlink_to(secret)
        expected = "expected a path inside the project"
    else:
        weights.symlink_to("/dev/urandom")
        expected = "expected a regular file, got a character device"
    manifest = tiny / "manifests" / "tiny.yaml"
    manifest.write_text(manifest.read_text().replace("tiny.safetensors", "odd.safetensors"))
    for command in ("check", "build"):
        result = run_cli(tiny, command, "manifests", "--no-bench") if command == "build" else run_cli(tiny, command, "manifests")
        assert result.returncode == 2, result.stdout + result.stderr
        assert f"manifests/tiny.yaml:5: source.weights: {expected}" in result.stderr
        assert "Traceback" not in result.stderr
    assert not (tiny / "cache" / "objects").exists() or not any((tiny / "cache" / "objects").rglob("*secret*"))


def test_a_model_folder_in_build_linked_elsewhere_is_never_written_through(tiny: Path, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (tiny / "build").mkdir()
    (tiny / "build" / ".modelbuild").write_text("")
    (tiny / "build" / "tiny").symlink_to(outside)
    result = run_cli(tiny, "build", "manifests", "--no-bench")
    assert result.returncode == 2 and "outside" in result.stderr and "Traceback" not in result.stderr
    assert list(outside.iterdir()) == []


def test_a_cache_path_that_is_a_file_fails_in_one_line(tiny: Path) -> None:
    (tiny / "cache").write_text("not a folder")
    result = run_cli(tiny, "build", "manifests", "--no-bench")
    assert result.returncode == 2
    assert result.stderr.strip().startswith("error: cannot create the cache folder") and "Traceback" not in result.stderr
    assert (tiny / "cache").read_text() == "not a folder"


@pytest.mark.parametrize(
    "args, message",
    [
        (("build", "--target", "corml"), "--target: expected one of coreml, executorch, onnx, torchscript, got 'corml' (did you mean 'coreml'?)"),
        (("build", "--model", "tiyn"), "--model: expected the name of a model, got 'tiyn' (did you mean 'tiny'?)"),
        (("plan", "--target", "tflite"), "--target: expected one of coreml, executorch, onnx, torchscript, got 'tflite'"),
        (("graph", "--model", "nope"), "--model: expected the name of a model, got 'nope'"),
    ],
)
def test_unknown_names_on_the_command_line_get_the_closest_name(tiny: Path, args: tuple[str, ...], message: str) -> None:
    result = run_cli(tiny, *args)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr


def test_a_closed_pipe_is_not_an_error(tiny: Path) -> None:
    result = subprocess.run(f"{sys.executable} -m modelbuild graph manifests | head -1", shell=True, cwd=tiny, capture_output=True, text=True, timeout=120)
    assert result.stdout.count("\n") == 1
    assert "Traceback" not in result.stderr and "BrokenPipe" not in result.stderr


def test_a_link_out_of_the_project_inside_a_code_folder_is_refused(tiny: Path, tmp_path: Path) -> None:
    secret = tmp_path / "id_rsa"
    secret.write_text("private")
    (tiny / "models" / "notes.txt").symlink_to(secret)
    manifest = tiny / "manifests" / "tiny.yaml"
    manifest.write_text(manifest.read_text().replace("  factory: models.tiny:build\n", "  factory: models.tiny:build\n  code: [../models]\n"))
    result = run_cli(tiny, "build", "manifests", "--no-bench")
    assert result.returncode == 2
    assert "source.code[0]: expected files inside the project" in result.stderr and "'notes.txt' in '../models'" in result.stderr
    assert not (tiny / "cache" / "objects").exists()


def test_a_cache_dir_pointed_at_a_folder_of_code_is_refused_and_clean_cache_removes_only_the_cache_entries(tiny: Path) -> None:
    settings = tiny / "modelbuild.toml"
    settings.write_text(settings.read_text().replace('cache_dir = "cache"', 'cache_dir = "src"'))
    (tiny / "src").mkdir()
    (tiny / "src" / "train.py").write_text("# the user's training code")
    for command in (["build", "manifests", "--no-bench"], ["clean", "--cache"]):
        result = run_cli(tiny, *command)
        assert result.returncode == 2 and "already holds files modelbuild did not write" in result.stderr, result.stderr
    assert [p.name for p in (tiny / "src").iterdir()] == ["train.py"]
    assert (tiny / "src" / "train.py").read_text() == "# the user's training code"

    settings.write_text(settings.read_text().replace('cache_dir = "src"', 'cache_dir = "cache"'))
    assert run_cli(tiny, "build", "manifests", "--no-bench").returncode == 0
    assert (tiny / "cache" / "objects").is_dir()
    result = run_cli(tiny, "clean", "--cache")
    assert result.returncode == 0, result.stderr
    assert not (tiny / "cache" / "objects").exists() and not (tiny / "cache" / "state.sqlite").exists()
    assert (tiny / "src" / "train.py").read_text() == "# the user's training code"


def test_a_module_symlinked_out_of_the_project_is_refused(tiny: Path, tmp_path: Path) -> None:
    shared = tmp_path / "shared_layers.py"
    shared.write_text("X = 1\n")
    (tiny / "models" / "layers.py").symlink_to(shared)
    tiny_module = tiny / "models" / "tiny.py"
    tiny_module.write_text("from . import layers\n" + tiny_module.read_text())
    for command in ("check", "plan", "build"):
        result = run_cli(tiny, command, "manifests")
        assert result.returncode == 2, result.stdout + result.stderr
        assert "source.factory: expected the model's code inside the project" in result.stderr and "Traceback" not in result.stderr


def test_a_module_imported_from_the_project_folder_by_a_computed_name_is_said(tiny: Path) -> None:
    (tiny / "helpers.py").write_text("SCALE = 1\n")
    tiny_module = tiny / "models" / "tiny.py"
    tiny_module.write_text("import importlib\nimportlib.import_module('hel' + 'pers')\n" + tiny_module.read_text())
    result = run_cli(tiny, "build", "manifests", "--no-bench")  # python -m: the project folder is on sys.path
    assert result.returncode == 0, result.stdout + result.stderr
    assert "unkeyed: module 'helpers' was imported from helpers.py" in result.stdout


def _victim(tmp_path: Path) -> Path:
    folder = tmp_path / "victim"
    folder.mkdir(exist_ok=True)
    precious = folder / "precious.txt"
    precious.write_text("the user's own words")
    return precious


def test_links_planted_at_the_files_a_build_rewrites_are_replaced_never_written_through(tiny: Path, tmp_path: Path) -> None:
    """A hard link in build/<model>/logs/ (a log was opened for writing where it stood: the
    user's file emptied), a symbolic link at the release's bench.json (written through), a
    dangling link as out_dir's marker (created a file outside) and a link as the cache's lock
    (the build writes its pid into it)."""
    precious = _victim(tmp_path)
    assert run_cli(tiny, "build", "manifests", "--no-bench").returncode == 0
    logs = sorted((tiny / "build" / "tiny" / "logs").glob("*.log"))
    assert logs
    for log in logs:
        log.unlink()
        os.link(precious, log)
    (tiny / "dist").mkdir()
    (tiny / "dist" / "tiny-2.0.0.bench.json").symlink_to(precious)
    rebuilt = run_cli(tiny, "build", "manifests", "--no-bench", "--force")
    assert rebuilt.returncode == 0, rebuilt.stdout + rebuilt.stderr
    assert precious.read_text() == "the user's own words"
    assert all(log.stat().st_ino != precious.stat().st_ino for log in logs)
    release = run_cli(tiny, "release", "manifests", "--out", "dist")
    assert release.returncode == 0, release.stdout + release.stderr
    assert precious.read_text() == "the user's own words"
    assert not (tiny / "dist" / "tiny-2.0.0.bench.json").is_symlink()

    marker = tiny / "build" / ".modelbuild"
    marker.unlink()
    marker.symlink_to(tmp_path / "victim" / "created.txt")
    refused = run_cli(tiny, "build", "manifests", "--no-bench")
    assert refused.returncode == 2 and "marker is a symbolic link" in refused.stderr and "Traceback" not in refused.stderr
    assert not (tmp_path / "victim" / "created.txt").exists()
    marker.unlink()
    marker.write_text("")

    for plant in (os.link, os.symlink):
        lock = tiny / "cache" / "lock"
        lock.unlink(missing_ok=True)
        plant(precious, lock)
        refused = run_cli(tiny, "build", "manifests", "--no-bench", "--force")
        assert refused.returncode == 2 and "modelbuild never makes" in refused.stderr, refused.stderr
        assert precious.read_text() == "the user's own words"
        lock.unlink()


def test_an_out_dir_holding_someones_report_json_is_not_taken_over(tiny: Path) -> None:
    reports = tiny / "build"
    reports.mkdir()
    (reports / "report.json").write_text("{}")
    (reports / "q3-analysis.txt").write_text("important")
    build = run_cli(tiny, "build", "manifests", "--no-bench")
    assert build.returncode == 2 and "already holds files modelbuild did not write" in build.stderr
    assert run_cli(tiny, "clean").returncode == 2
    assert (reports / "report.json").read_text() == "{}" and (reports / "q3-analysis.txt").read_text() == "important"


def test_a_cache_dir_of_the_users_is_refused_and_a_cache_from_before_the_tag_is_kept(tiny: Path) -> None:
    userdata = tiny / "cache"
    (userdata / "objects").mkdir(parents=True)
    (userdata / "objects" / "mine.txt").write_text("mine")
    (userdata / "state.sqlite").write_text("not a database")
    (userdata / "noop.json").write_text("my notes")
    before = tree(userdata)
    for command in (["build", "manifests", "--no-bench"], ["clean", "--cache"], ["cache", "gc"]):
        result = run_cli(tiny, *command)
        assert result.returncode == 2 and "already holds files modelbuild did not write" in result.stderr, result.stderr
        assert "Traceback" not in result.stderr
    assert tree(userdata) == before

    import shutil

    shutil.rmtree(userdata)
    assert run_cli(tiny, "build", "manifests", "--no-bench").returncode == 0
    assert (userdata / "CACHEDIR.TAG").read_text().startswith("Signature: 8a477f597d28d172789f06886806bc55")
    (userdata / "CACHEDIR.TAG").unlink()  # a cache made before the tag: its state database says whose it is
    result = run_cli(tiny, "build", "manifests", "--no-bench", env={"MODELBUILD_FASTPATH": "0"})  # the full path, which writes
    assert result.returncode == 0 and "5 stages up to date" in result.stdout, result.stdout + result.stderr
    assert (userdata / "CACHEDIR.TAG").is_file()


def test_gc_and_clean_never_delete_through_a_linked_folder_in_the_cache(tiny: Path, tmp_path: Path) -> None:
    outside = tmp_path / "victim2"
    (outside / "ab").mkdir(parents=True)
    digest_named = outside / "ab" / ("ab" + "0" * 62)
    digest_named.write_text("looks like a cache entry")
    (outside / "leftover").write_text("not a stage's leftover")
    assert run_cli(tiny, "build", "manifests", "--no-bench").returncode == 0
    (tiny / "cache" / "objects" / "ab").symlink_to(outside / "ab")
    shutil_tmp = tiny / "cache" / "tmp"
    if shutil_tmp.exists():
        import shutil

        shutil.rmtree(shutil_tmp)
    shutil_tmp.symlink_to(outside)
    for command in (["cache", "gc"], ["cache", "verify"], ["clean", "--cache"]):
        result = run_cli(tiny, *command)
        assert result.returncode == 0, result.stdout + result.stderr
        assert digest_named.read_text() == "looks like a cache entry" and (outside / "leftover").is_file()


def test_a_release_leaves_a_users_file_under_the_measurements_name_alone(tiny: Path) -> None:
    """``release --no-bench`` removes the last release's measurements beside the bundle (old
    timings must not sit beside new bytes), and a release with them replaces that file: a file
    of the user's under the same name is refused, never removed or overwritten."""
    assert run_cli(tiny, "build", "manifests", "--no-bench").returncode == 0
    (tiny / "dist").mkdir()
    theirs = tiny / "dist" / "tiny-2.0.0.bench.json"
    theirs.write_text("my notes on the phone's timings\n")
    refused = run_cli(tiny, "release", "manifests", "--out", "dist", "--no-bench")
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "tiny-2.0.0.bench.json exists and is not modelbuild's measurements" in refused.stderr and "Traceback" not in refused.stderr
    assert theirs.read_text() == "my notes on the phone's timings\n"
    assert not (tiny / "dist" / "tiny-2.0.0").exists()  # refused before anything was written

    ours = '[{"stage": "torchscript.bench", "runtime": "torchscript", "median_ms": 1.0}]\n'
    theirs.write_text(ours)  # what an earlier release wrote there
    released = run_cli(tiny, "release", "manifests", "--out", "dist", "--no-bench")
    assert released.returncode == 0, released.stdout + released.stderr
    assert not theirs.exists()  # no measurements this time: the old ones are gone
