"""A working directory or autosave storage the user cannot write costs the autosave only (issue 12, item 1)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import FAST, HANG_GUARD, REPO, pace_s


def _journal_finished(output: Path) -> bool:
    journals = list((output / "journals").glob("journal-*.jsonl"))
    return len(journals) == 1 and json.loads(journals[0].read_text().splitlines()[-1]) == {"type": "end"}


def test_autosave_into_an_unwritable_storage_is_a_warning(run_suite, pytester_sub: pytest.Pytester) -> None:
    blocker = pytester_sub.path / "a-file"
    blocker.write_text("not a directory")  # nothing, root included, can create a directory under a file
    output = pytester_sub.path / "results"
    run = run_suite("--densebench-optimizations=baseline", "--densebench-batch-sizes=1", "--benchmark-autosave",
                    f"--benchmark-storage=file://{blocker}/storage", f"--densebench-output={output}")
    assert run.result.ret == 0, run.result.stdout.str()[-3000:]
    run.result.stdout.fnmatch_lines(["WARNING densebench: pytest-benchmark could not autosave into its storage*"
                                     "the results are in the --benchmark-json file*"])
    assert list(run.benchmarks) == ["baseline-bs1"], "the JSON is written before the failed autosave"
    assert _journal_finished(output), "the journal ends with its end marker (the next run recovers nothing)"


def _unwritable_prefix(directory: Path) -> list[str]:
    """A command prefix under which ``directory`` (mode 0555) really is unwritable."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv: cannot make a directory unwritable for this process")
    # root writes anywhere through CAP_DAC_OVERRIDE: drop it (and DAC_READ_SEARCH) from the bounding set
    return [setpriv, "--bounding-set", "-dac_override,-dac_read_search", "--"]


def test_densebench_run_from_an_unwritable_directory(tmp_path: Path) -> None:
    """The 'done means' command of issue 12: exit 0, results.json and report.html, journal finished."""
    cwd = tmp_path / "readonly"
    cwd.mkdir()
    output = tmp_path / "out"
    cwd.chmod(0o555)
    try:
        prefix = _unwritable_prefix(cwd)
        fast = [a for a in FAST if a not in ("-p", "densebench.plugin")]
        proc = subprocess.run([*prefix, sys.executable, "-m", "densebench.cli", "run", "-o", str(output), *fast,
                               "--densebench-optimizations=baseline", "--densebench-batch-sizes=1",
                               "--densebench-isolate=false", "--densebench-scenarios=batch"],
                              check=False, cwd=cwd, capture_output=True, text=True, timeout=HANG_GUARD * pace_s(),
                              env={**os.environ, "PYTHONPATH": str(REPO)})
    finally:
        cwd.chmod(0o755)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert not (cwd / ".benchmarks").exists()
    assert f"{cwd} is not writable; autosave goes to {output.resolve() / '.benchmarks'}" in proc.stdout
    assert (output / "results.json").is_file() and (output / "report.html").is_file()
    assert list((output / ".benchmarks").rglob("0001_*.json")), "the autosave landed beside the results"
    assert _journal_finished(output)
