"""The fleet recipes: the GitHub Actions workflow (one self-hosted runner per GPU type, one PostgreSQL
store) and the Kubernetes Indexed Job, validated offline by their own schema tools, and checked to
use densebench's real options and commands."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from densebench.cli import build_parser
from densebench.settings import OPTIONS_BY_KEY

REPO = Path(__file__).resolve().parent.parent
WORKFLOW = REPO / ".github/workflows/fleet.yml"
MANIFEST = REPO / "deploy/kubernetes/densebench-fleet.yaml"


def kubernetes_validate(*files: str) -> subprocess.CompletedProcess[str]:
    found = shutil.which("kubernetes-validate") or str(Path(sys.executable).parent / "kubernetes-validate")
    if not Path(found).exists():
        pytest.skip("kubernetes-validate is not installed (pip install 'densebench[test]')")
    return subprocess.run([found, "--strict", *files], check=False, capture_output=True, text=True, cwd=REPO,
                          timeout=120)


def test_the_manifest_validates_against_the_bundled_kubernetes_schemas() -> None:
    result = kubernetes_validate(str(MANIFEST.relative_to(REPO)))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "job/densebench-fleet" in result.stdout + result.stderr


def test_the_kubernetes_schema_rejects_a_broken_manifest(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(MANIFEST.read_text().replace("  parallelism: 3", "  paralelism: 3"))
    result = kubernetes_validate(str(bad))
    assert result.returncode == 1 and "paralelism" in result.stdout + result.stderr, result.stdout + result.stderr


def test_the_job_runs_one_pod_per_gpu_type_into_the_store() -> None:
    pvc, job = yaml.safe_load_all(MANIFEST.read_text())
    spec = job["spec"]
    assert job["kind"] == "Job" and spec["completionMode"] == "Indexed"
    pod = spec["template"]["spec"]
    (term,) = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    (types,) = [e["values"] for e in term["matchExpressions"] if e["key"] == "nvidia.com/gpu.product"]
    assert spec["completions"] == spec["parallelism"] == len(types)
    (spread,) = pod["topologySpreadConstraints"]
    assert (spread["topologyKey"], spread["maxSkew"], spread["whenUnsatisfiable"]) == (
        "nvidia.com/gpu.product", 1, "DoNotSchedule")
    assert spread["labelSelector"]["matchLabels"].items() <= spec["template"]["metadata"]["labels"].items()
    (container,) = pod["containers"]
    env = {e["name"]: e for e in container["env"]}
    assert env[OPTIONS_BY_KEY["store"].env]["valueFrom"]["secretKeyRef"] == {"name": "densebench-store", "key": "url"}
    assert OPTIONS_BY_KEY["machine_label"].env in env
    assert pod["volumes"][0]["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"]


def test_the_workflow_runs_each_gpu_type_on_its_runners_into_one_store() -> None:
    flow = yaml.safe_load(WORKFLOW.read_text())
    labels = set(yaml.safe_load((REPO / ".github/actionlint.yaml").read_text())["self-hosted-runner"]["labels"])
    bench = flow["jobs"]["benchmark"]
    gpus = bench["strategy"]["matrix"]["gpu"]
    assert set(gpus) <= labels and "gpu" in labels
    assert bench["runs-on"] == ["self-hosted", "linux", "gpu", "${{ matrix.gpu }}"]
    assert bench["env"][OPTIONS_BY_KEY["store"].env] == "${{ secrets.DENSEBENCH_STORE_URL }}"
    assert flow["jobs"]["history"]["env"][OPTIONS_BY_KEY["store"].env] == "${{ secrets.DENSEBENCH_STORE_URL }}"
    assert flow["jobs"]["history"]["needs"] == "benchmark"


def test_the_workflow_calls_densebench_with_real_arguments() -> None:
    flow = yaml.safe_load(WORKFLOW.read_text())
    commands = [line.strip() for job in flow["jobs"].values() for step in job["steps"]
                for line in step.get("run", "").splitlines() if "densebench " in line and "pip" not in line]
    assert any("history --fail-on-regression" in c for c in commands), commands
    parser = build_parser()
    for command in commands:
        argv = shlex.split(command.split("densebench", 1)[1])
        args, extra = parser.parse_known_args(argv)  # exits (SystemExit) on an unknown command or flag
        assert args.command == "run" or not extra, (command, extra)
