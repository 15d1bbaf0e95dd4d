"""Files written before the core re-cut (commit d9cca18) still load everywhere.

``tests/data/d9cca18/`` holds a real results JSON and the journal of the same run, made by
that commit's code (CPU, random weights, 32 px, baseline measured and tf32 skipped). The
JSON contract is "extend, never rename": today's readers must take them as they are.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from densebench import cli, records

OLD = Path(__file__).resolve().parent / "data" / "d9cca18"


def test_old_results_load_as_records() -> None:
    doc = json.loads((OLD / "results.json").read_text())
    assert records.ResultsFile.from_json(doc).to_json() == doc
    run = records.RunRecord.from_json(doc["densebench"])
    assert [o.status for o in run.outcomes] == [records.Status.MEASURED, records.Status.SKIPPED]


def test_old_results_validate_against_the_schema() -> None:
    jsonschema = pytest.importorskip("jsonschema", reason="needs jsonschema: pip install -e '.[test]'")
    doc = json.loads((OLD / "results.json").read_text())
    jsonschema.Draft202012Validator(records.json_schema()).validate(doc)


def test_old_results_in_report_show_and_compare(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    results = str(OLD / "results.json")
    assert cli.main(["report", results, "-o", str(tmp_path / "report")]) == 0
    assert "baseline" in (tmp_path / "report" / "report.md").read_text()
    assert cli.main(["show", results]) == 0
    assert "baseline" in capsys.readouterr().out
    # The same file against itself: nothing changed, so no regression and exit status 0.
    assert cli.main(["compare", results, results]) == 0
    assert "no regression in 1 comparisons" in capsys.readouterr().out


@pytest.mark.parametrize("complete", [True, False], ids=["finished", "crashed"])
def test_old_journal_recovers(tmp_path: Path, capsys: pytest.CaptureFixture[str], complete: bool) -> None:
    journal = tmp_path / "journal.jsonl"
    lines = (OLD / "journal.jsonl").read_text().splitlines(keepends=True)
    journal.write_text("".join(lines if complete else lines[:-1]))  # a crash leaves no end marker
    out = tmp_path / "recovered.json"
    assert cli.main(["recover", str(journal), "-o", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert [b["param"] for b in doc["benchmarks"]] == ["baseline-bs1"]
    assert doc["densebench"]["complete"] is complete
    assert cli.main(["show", str(out)]) == 0
    shutil.rmtree(tmp_path / "report", ignore_errors=True)
    assert cli.main(["report", str(out), "-o", str(tmp_path / "report")]) == 0
