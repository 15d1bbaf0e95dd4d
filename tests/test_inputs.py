"""What users really hand densebench (issue 13): every case gives the right result or a clear refusal.

Each test makes its own small input: result files, journals, weights, folder trees and datasets are
written here; suite runs use the FAST settings. No assertion depends on how fast this machine is.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from densebench import compare as compare_mod
from densebench import data, derived, isolate, journal, report, storage
from densebench.cli import main
from densebench.errors import DataError, SettingsError, StorageWarning, WeightsError
from densebench.measure import Measurement
from densebench.optimizations.base import BuildContext
from densebench.settings import Settings
from tests.conftest import FAST, HANG_GUARD, REPO, SUITE, jpeg_bytes, make_tiny_zip, pace_s

# ---------------------------------------------------------------- fabricated result files


def bench(opt: str, bs: int, median_ms: float, *, passed: bool = True, image_size: int = 64,
          weights: str = "random", dataset: str = "synthetic", device_name: str = "Test CPU") -> dict[str, Any]:
    """One saved benchmark as densebench writes it, with raw rounds around ``median_ms``."""
    rounds = [median_ms / 1e3 * f for f in (0.98, 0.99, 1.0, 1.0, 1.01, 1.02)]
    parity = {"passed": passed, "failures": [] if passed else ["top-1 agreement 0.500 < 0.95 (4 flips, 0 of them "
                                                               "near-ties)"]}
    return {"name": f"test_inference[{opt}-bs{bs}]", "params": {"optimization": opt, "batch_size": bs},
            "stats": {"median": median_ms / 1e3, "data": rounds},
            "extra_info": {"optimization": opt, "batch_size": bs, "image_size": image_size, "device": "cpu",
                           "device_name": device_name, "weights": weights, "dataset": dataset, "parity": parity,
                           "precision": "fp32", "throughput_samples_per_s": bs / (median_ms / 1e3),
                           "latency_ms": {"p50": median_ms, "p99": median_ms * 1.1}, "build_s": 0.5,
                           "warmup_s": 0.25, "memory": {"peak_rss_mb": 500.0}}}


def result_file(path: Path, benches: list[dict[str, Any]], outcomes: list[dict[str, Any]] | None = None,
                **settings: Any) -> Path:
    config = {"image_size": 64, "eval_samples": 32, "parity_top1": 0.95, "parity_top5": 0.99,
              "parity_logit_error": 0.5, "parity_tie_band": 0.005, **settings}
    doc = {"benchmarks": benches, "machine_info": {"node": "n"}, "datetime": "2026-11-29T00:00:00",
           "densebench": {"settings": config, "outcomes": outcomes or []}}
    path.write_text(json.dumps(doc))
    return path


# ---------------------------------------------------------------- 1: relative paths, isolation


def test_every_path_setting_is_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "imgs").mkdir()
    (tmp_path / "w.pt").write_bytes(b"")
    s = Settings.from_mapping({"output": "out", "data_dir": "d", "journal": "j/x.jsonl", "dataset": "imgs",
                               "weights": "w.pt"})
    assert s.output == tmp_path / "out" and s.data_dir == tmp_path / "d"
    assert s.journal == str(tmp_path / "j" / "x.jsonl")
    assert s.dataset == str(tmp_path / "imgs") and s.weights == str(tmp_path / "w.pt")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(["src", str(REPO)]))
    env = isolate.child_env(s, Path("rel/journal.jsonl"))
    assert env["DENSEBENCH_OUTPUT"] == str(tmp_path / "out")
    assert env["DENSEBENCH_JOURNAL"] == str(tmp_path / "rel" / "journal.jsonl")
    assert env["PYTHONPATH"].split(os.pathsep) == [str(tmp_path / "src"), str(REPO)]


def test_isolated_run_started_outside_its_rootdir_with_a_relative_output(tmp_path: Path) -> None:
    """The child runs in the rootdir; the relative output and journal still mean the caller's folder."""
    project, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    project.mkdir()
    elsewhere.mkdir()
    (project / "test_suite.py").write_text(SUITE)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *FAST, "../project/test_suite.py",
           "--rootdir=../project", "--densebench-optimizations=baseline", "--densebench-batch-sizes=1",
           "--densebench-output=out", "--densebench-isolate", "--benchmark-json=out/results.json"]
    run = subprocess.run(cmd, cwd=elsewhere, env=env, capture_output=True, text=True, check=False,
                         timeout=HANG_GUARD * pace_s())
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    doc = json.loads((elsewhere / "out" / "results.json").read_text())
    assert [b["params"] for b in doc["benchmarks"]] == [{"optimization": "baseline", "batch_size": 1}]
    assert [o["status"] for o in doc["densebench"]["outcomes"]] == ["measured"]
    assert list((elsewhere / "out" / "isolated").glob("*/journal-baseline.jsonl"))
    assert not (project / "out").exists()


# ---------------------------------------------------------------- 2, 3: compare


def test_compare_fails_the_gate_on_a_missing_configuration_and_a_new_parity_failure(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = result_file(tmp_path / "base.json", [bench("baseline", 1, 10), bench("amp", 1, 8), bench("jit", 1, 9)])
    crashed = {"optimization": "jit", "batch_size": 1, "status": "crashed",
               "reason": "jit: the child died with SIGSEGV"}
    new = result_file(tmp_path / "new.json", [bench("baseline", 1, 10), bench("amp", 1, 8, passed=False),
                                              bench("bf16", 1, 7)], outcomes=[crashed])
    changes = {(c.optimization, c.batch_size): c for c in compare_mod.compare(base, new)}
    assert changes[("baseline", 1)].verdict == "within threshold"
    assert changes[("amp", 1)].verdict == "parity failed" and "top-1 agreement 0.500" in changes[("amp", 1)].note
    assert changes[("jit", 1)].verdict == "missing" and "SIGSEGV" in changes[("jit", 1)].note
    assert changes[("bf16", 1)].verdict == "not in base" and not changes[("bf16", 1)].flagged
    assert main(["compare", str(base), str(new)]) == 1
    out = capsys.readouterr().out
    assert "1 missing, 1 parity failure(s)" in out and "missing: jit at batch 1 (crashed: jit: the child died" in out
    assert "| bf16 | 1 | — |" in out and "| not in base: measured only in the new run" in out  # listed, not flagged
    # the same configurations, all present and passing: the gate passes
    assert main(["compare", str(base), str(base)]) == 0


def test_compare_names_every_setting_that_differs_and_refuses(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    base = result_file(tmp_path / "base.json", [bench("baseline", 1, 10)])
    new = result_file(tmp_path / "new.json", [bench("baseline", 1, 40, image_size=160, weights="imagenet",
                                                    dataset="tiny-imagenet")],
                      image_size=160, parity_top1=0.9)
    assert main(["compare", str(base), str(new)]) == 2
    err = capsys.readouterr().err
    for line in ("image size (--densebench-image-size): 64 in the base, 160 in the new run",
                 "weights (--densebench-weights): random in the base, imagenet in the new run",
                 "dataset (--densebench-dataset): synthetic in the base, tiny-imagenet in the new run",
                 "parity threshold (--densebench-parity-top1): 0.95 in the base, 0.9 in the new run",
                 "--allow-different-settings"):
        assert line in err
    assert main(["compare", str(base), str(new), "--allow-different-settings"]) == 1  # 4x slower: flagged


def test_compare_refuses_a_damaged_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = result_file(tmp_path / "base.json", [bench("baseline", 1, 10)])
    broken = bench("baseline", 1, 10)
    broken["stats"]["median"] = 0
    new = result_file(tmp_path / "new.json", [broken])
    assert main(["compare", str(base), str(new)]) == 2
    assert "no positive median round time" in capsys.readouterr().err
    latin = tmp_path / "latin.json"
    latin.write_bytes(b'{"benchmarks": [], "note": "caf\xe9"}')
    assert main(["compare", str(base), str(latin)]) == 2
    assert "not UTF-8" in capsys.readouterr().err


# ---------------------------------------------------------------- 4: storage failures


def test_a_journal_that_cannot_be_written_turns_off_with_one_warning(tmp_path: Path) -> None:
    problems: list[str] = []
    j = journal.Journal(Path("/dev/full"), header={"x": 1}, on_problem=problems.append)
    with pytest.warns(StorageWarning, match="results journal /dev/full .No space left on device.; journaling is off"):
        j.write({"type": "outcome"})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        j.write({"type": "outcome"})  # already off: no second warning, no error
        j.close()
    assert len(problems) == 1 and j.problem == problems[0]


def test_suite_with_journal_on_dev_full_keeps_every_result(run_suite) -> None:
    run = run_suite("--densebench-optimizations=baseline", "--densebench-batch-sizes=1",
                    "--densebench-journal=/dev/full")
    assert run.result.ret == 0, run.result.stdout.str()[-3000:]
    assert [o["status"] for o in run.outcomes()] == ["measured"]
    assert list(run.benchmarks) == ["baseline-bs1"]
    assert "Traceback" not in run.result.stdout.str()
    assert "could not write the results journal /dev/full" in run.json["densebench"]["storage_problems"][0]
    run.result.stdout.fnmatch_lines(["*densebench: could not write the results journal /dev/full*"])


def test_results_json_that_cannot_be_written_points_to_the_journal(run_suite, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    run = run_suite("--densebench-optimizations=baseline", "--densebench-batch-sizes=1",
                    f"--densebench-output={tmp_path / 'out'}", json_name=str(blocker / "results.json"))
    stdout = run.result.stdout.str()
    assert run.result.ret == 0, stdout[-3000:]
    assert "could not write the results JSON" in stdout and "densebench recover" in stdout
    (journal_path,) = (tmp_path / "out" / "journals").glob("journal-*.jsonl")
    assert main(["recover", str(journal_path), "-o", str(tmp_path / "r.json")]) == 0
    recovered = json.loads((tmp_path / "r.json").read_text())
    assert [b["params"]["optimization"] for b in recovered["benchmarks"]] == ["baseline"]


def test_isolated_child_without_a_folder_fails_that_optimization_cleanly(run_suite, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "isolated").write_text("a file where the children's folder goes")
    run = run_suite("--densebench-optimizations=baseline", "--densebench-batch-sizes=1", "--densebench-isolate",
                    f"--densebench-output={out}")
    stdout = run.result.stdout.str()
    assert run.result.ret == 1 and "Traceback" not in stdout, stdout[-3000:]
    run.result.stdout.fnmatch_lines(["failed: baseline at batch 1: densebench: could not write the isolated child's "
                                     "log and journal */out/isolated/* (Not a directory); baseline was not started; "
                                     "choose another --densebench-output"])
    (journal_path,) = (out / "journals").glob("journal-*.jsonl")  # the outcome is kept like any other
    assert [o["status"] for o in journal.read(journal_path)["outcomes"]] == ["failed"]


def test_report_and_cache_that_cannot_be_written(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    results = result_file(tmp_path / "r.json", [bench("baseline", 1, 10)])
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    assert main(["report", str(results), "-o", str(blocker / "report")]) == 2
    assert "could not write the report" in capsys.readouterr().err
    ctx = BuildContext(device=None, cache_dir=blocker / "cache")
    with pytest.warns(StorageWarning, match="compile cache .* building without the cache"):
        assert ctx.cache("onnx") is None
    assert BuildContext(device=None, cache_dir=tmp_path / "cache").cache("onnx") == tmp_path / "cache" / "onnx"


# ---------------------------------------------------------------- 5: Tiny ImageNet already extracted


def test_an_extracted_tiny_imagenet_without_its_zip_is_used(tmp_path: Path) -> None:
    archive = make_tiny_zip(tmp_path / "tiny-imagenet-200.zip")
    data_dir = tmp_path / "data"
    with zipfile.ZipFile(archive) as zf:
        zf.extractall(data_dir)  # as unzip would: no densebench marker, no zip beside it
    for dataset in ("tiny-imagenet", "auto"):
        loaded = data.load(dataset, data_dir, 4, 32, offline=True)
        assert loaded.info.source == "tiny-imagenet" and loaded.info.label_space == "imagenet-1k"
        assert loaded.info.fallback_reason is None and len(loaded.images) == 4
    (data_dir / "tiny-imagenet-200" / "val" / "val_annotations.txt").unlink()
    with pytest.raises(DataError, match=r"tiny-imagenet-200 exists but is not a usable Tiny ImageNet-200 tree: "
                                        r".*val_annotations.txt is missing.*densebench data --archive"):
        data.load("tiny-imagenet", data_dir, 4, 32, offline=True)


# ---------------------------------------------------------------- 6: lower bounds


def test_eval_samples_needs_two_images(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="--densebench-eval-samples: 1 is too small .allowed: an integer >= 2; "
                                            "parity.s logit error"):
        Settings.from_mapping({"eval_samples": "1"})
    one = tmp_path / "one" / "cats"
    one.mkdir(parents=True)
    (one / "a.jpg").write_bytes(jpeg_bytes(1))
    with pytest.raises(DataError, match="gives 1 image.s., one: parity needs at least 2 different images"):
        data.load(str(one.parent), tmp_path, 8, 32)
    (one / "b.jpg").write_bytes(jpeg_bytes(1))  # the same picture twice
    with pytest.raises(DataError, match="gives 2 image.s., all alike"):
        data.load(str(one.parent), tmp_path, 8, 32)
    (one / "c.jpg").write_bytes(jpeg_bytes(2))
    assert len(data.load(str(one.parent), tmp_path, 8, 32).images) == 3


# ---------------------------------------------------------------- 7: weights from wrappers


@pytest.fixture(scope="module")
def reference_state() -> dict[str, Any]:
    import torch
    from torchvision.models import densenet121

    torch.manual_seed(7)
    return densenet121(weights=None).state_dict()


def _same(model: Any, state: dict[str, Any]) -> bool:
    import torch

    return all(torch.equal(v, state[k]) for k, v in model.state_dict().items())


def test_weights_from_compile_ddp_lightning_and_safetensors_load(tmp_path: Path,
                                                                 reference_state: dict[str, Any]) -> None:
    import torch
    from safetensors.torch import save_file
    from torchvision.models import densenet121

    from densebench.model import build_model

    module = densenet121(weights=None)
    module.load_state_dict(reference_state)
    compiled = torch.compile(module)  # compiles lazily: nothing runs, only the keys change
    files = {
        "compiled.pt": compiled.state_dict(),
        "ddp.pt": torch.nn.DataParallel(module).state_dict(),
        "ddp_of_compiled.pt": {f"module.{k}": v for k, v in compiled.state_dict().items()},
        "lightning.ckpt": {"epoch": 3, "hyper_parameters": {"lr": 0.1},
                           "state_dict": {f"model.{k}": v for k, v in reference_state.items()}},
    }
    for name, obj in files.items():
        torch.save(obj, tmp_path / name)
    save_file({k: v.contiguous() for k, v in reference_state.items()}, str(tmp_path / "weights.safetensors"))
    assert next(iter(files["compiled.pt"])).startswith("_orig_mod.")
    for name in (*files, "weights.safetensors"):
        model, info = build_model(str(tmp_path / name))
        assert info.source == "file" and _same(model, reference_state), name


def test_weights_that_do_not_fit_are_refused_with_the_full_reason(tmp_path: Path,
                                                                  reference_state: dict[str, Any]) -> None:
    import torch

    from densebench.model import build_model

    state = {f"_orig_mod.{k}": v for k, v in reference_state.items()}
    state.update({f"_orig_mod.head.fc{i}.weight": torch.zeros(2) for i in range(40)})
    state["_orig_mod.classifier.weight"] = torch.zeros(10, 1024)
    torch.save(state, tmp_path / "extra.pt")
    with pytest.raises(WeightsError) as info:
        build_model(str(tmp_path / "extra.pt"))
    message = str(info.value)
    assert "40 unexpected key(s), all under 'head.': 'head.fc0.weight'" in message
    assert "classifier.weight is (10, 1024) in the file, (1000, 1024) in DenseNet-121" in message
    assert "another number of classes" in message
    torch.save({"state_dict": {"a": 1}}, tmp_path / "odd.pt")
    with pytest.raises(WeightsError, match="1 of its 1 entries are not tensors .'a': int."):
        build_model(str(tmp_path / "odd.pt"))
    (tmp_path / "broken.safetensors").write_bytes((20).to_bytes(8, "little") + b'{"a": 1' + b" " * 40)
    with pytest.raises(WeightsError, match="cannot read safetensors file"):
        build_model(str(tmp_path / "broken.safetensors"))


# ---------------------------------------------------------------- 8: ImageFolder trees as users have them


def test_image_folder_skips_hidden_folders_and_stray_files(tmp_path: Path) -> None:
    root = tmp_path / "imgs"
    for i, wnid in enumerate(("n01443537", "n01629819")):
        (root / wnid).mkdir(parents=True)
        (root / wnid / f"img{i}.JPG").write_bytes(jpeg_bytes(i))
        (root / wnid / "notes.txt").write_text("not an image")
    (root / "n01443537" / "more.gif").write_bytes(_gif())
    for junk in (root / ".ipynb_checkpoints" / "x.jpg", root / "n01443537" / ".ipynb_checkpoints" / "y.jpg",
                 root / "n01443537" / "._img0.JPG"):
        junk.parent.mkdir(parents=True, exist_ok=True)
        junk.write_bytes(b"not a picture")
    (root / "README.md").write_text("stray file at the root")
    classes, samples = data.folder_samples(root)
    assert classes == ["n01443537", "n01629819"]
    assert sorted(p.name for p, _ in samples) == ["img0.JPG", "img1.JPG", "more.gif"]
    loaded = data.load(str(root), tmp_path, 8, 32)
    assert loaded.info.label_space == "imagenet-1k" and loaded.labels is not None
    (root / "cats").mkdir()
    (root / "cats" / "c.png").write_bytes(_png())
    mixed = data.load(str(root), tmp_path, 8, 32)
    assert mixed.labels is None
    assert mixed.info.extra["label_reason"] == (f"no ImageNet-1k labels: class folder(s) 'cats' of {root} are not "
                                                "ImageNet synsets (like n01443537)")


def test_image_folder_without_images_names_the_layout(tmp_path: Path) -> None:
    (tmp_path / "empty" / ".ipynb_checkpoints").mkdir(parents=True)
    with pytest.raises(DataError, match=r"holds no class folders; expected .*/<class>/<image>, images in a format "
                                        r"Pillow opens \(.jpg, .jpeg, .png"):
        data.load(str(tmp_path / "empty"), tmp_path, 8, 32)


def _gif() -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (40, 40), (10, 200, 30)).save(buf, format="GIF")
    return buf.getvalue()


def _png() -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (40, 40), (200, 20, 90)).save(buf, format="PNG")
    return buf.getvalue()


# ---------------------------------------------------------------- 9: pytest-benchmark switches reach the children


def test_benchmark_switches_are_passed_to_isolated_children() -> None:
    given = {"benchmark_disable": True, "benchmark_skip": False, "benchmark_only": True, "benchmark_max_time": 0.5,
             "benchmark_json": "x.json", "benchmark_autosave": "tag"}
    config = SimpleNamespace(getoption=lambda name, default=None: given.get(name, default))
    args = isolate.benchmark_args(config)
    assert "--benchmark-disable" in args and "--benchmark-only" in args and "--benchmark-max-time=0.5" in args
    assert not [a for a in args if a.startswith(("--benchmark-skip", "--benchmark-json", "--benchmark-autosave"))]


def test_benchmark_disable_with_isolation_runs_each_configuration_once_untimed(run_suite) -> None:
    run = run_suite("--densebench-optimizations=baseline", "--densebench-batch-sizes=1", "--densebench-isolate",
                    "--benchmark-disable")
    stdout = run.result.stdout.str()
    assert run.result.ret == 0, stdout[-3000:]
    assert "crashed" not in stdout and "Name (time in" not in stdout
    assert run.json is None  # benchmarks off: pytest-benchmark saves nothing, as without isolation
    (log,) = (run.path.parent / "results" / "isolated").glob("*/baseline.log")
    child = log.read_text()
    assert "1 passed" in child and "Name (time in" not in child  # the child ran it once, untimed


# ---------------------------------------------------------------- 10: derived fields of a cut-short run


def _journal_of_a_killed_run(path: Path) -> Path:
    header = {"type": "header", "datetime": "2026-11-29T00:00:00", "machine_info": {}, "commit_info": {},
              "densebench": {"version": "0", "settings": {"optimizations": ["baseline", "amp"], "batch_sizes": [1, 2],
                                                          "latency_budget_ms": 50.0},
                             "outcomes": [], "best": [], "offline": None, "setup_s": {"total": 0, "build": 0,
                                                                                      "warmup": 0}}}
    skipped = {"optimization": "amp", "batch_size": 2, "status": "skipped", "reason": "amp needs bf16 here"}
    base1 = bench("baseline", 1, 20)
    lines = [header, {"type": "benchmark", "benchmark": base1},
             {"type": "outcome", "outcome": Measurement(base1["extra_info"]).outcome().to_json()},
             {"type": "outcome", "outcome": skipped},
             {"type": "benchmark", "benchmark": bench("amp", 1, 10)}]  # killed before amp's outcome line
    path.write_text("".join(json.dumps(x) + "\n" for x in lines) + '{"type": "outc')
    return path


def test_a_recovered_run_has_its_derived_fields_and_says_what_never_ran(tmp_path: Path) -> None:
    doc = journal.recover(_journal_of_a_killed_run(tmp_path / "journal-x.jsonl"), tmp_path / "r.json")
    dense = json.loads((tmp_path / "r.json").read_text())["densebench"]
    assert dense == json.loads(json.dumps(doc["densebench"]))
    assert [(o["optimization"], o["status"]) for o in dense["outcomes"]] == [
        ("baseline", "measured"), ("amp", "skipped"), ("amp", "measured")]
    assert dense["best"][0]["optimization"] == "amp" and dense["best"][0]["speedup_vs_baseline"] == pytest.approx(2)
    assert dense["offline"]["optimization"] == "amp"
    assert dense["server"]["fits"] and dense["server"]["optimization"] == "amp"  # p99 11 ms within 50 ms
    assert dense["setup_s"] == {"total": 1.5, "build": 1.0, "warmup": 0.5}
    assert [s["optimization"] for s in dense["skipped"]] == ["amp"]
    assert dense["never_ran"] == [{"optimization": "baseline", "batch_size": 2}]
    assert dense["complete"] is False
    lines = report.table_lines(tmp_path / "r.json")
    assert "incomplete run: recovered from a journal without its end marker (the run crashed or was killed)." in lines
    assert "never ran: baseline at batch 2." in lines
    written = report.build([tmp_path / "r.json"], tmp_path / "report")
    text = written["markdown"].read_text()
    assert "incomplete run" in text and "never ran: baseline at batch 2." in text


def test_a_finished_run_is_complete(tmp_path: Path) -> None:
    info = derived.fill({"settings": {"optimizations": ["baseline"], "batch_sizes": [1]},
                         "outcomes": [{"optimization": "baseline", "batch_size": None, "status": "skipped",
                                       "reason": "x"}]})
    assert info["complete"] is True and info["never_ran"] == [] and derived.incompleteness(info) == []


# ---------------------------------------------------------------- UTF-8 whatever the locale


def test_files_are_utf8_under_an_ascii_locale(tmp_path: Path) -> None:
    """A report and a recovered journal with non-ASCII text, written by a process whose locale is ASCII."""
    results = result_file(tmp_path / "r.json", [bench("baseline", 1, 10, device_name="Café GPU ✓")])
    script = tmp_path / "write.py"
    script.write_text("import sys; from pathlib import Path; from densebench import report, storage\n"
                      "report.build([Path(sys.argv[1])], Path(sys.argv[2]))\n"
                      "storage.write_text(Path(sys.argv[2]) / 'note.txt', 'r\\u00e9sum\\u00e9 \\u2713')\n")
    env = {**os.environ, "PYTHONPATH": str(REPO), "LC_ALL": "C", "LANG": "C", "PYTHONUTF8": "0",
           "PYTHONCOERCECLOCALE": "0", "PYTHONIOENCODING": "ascii"}
    out = tmp_path / "rapport é"
    run = subprocess.run([sys.executable, str(script), str(results), str(out)], env=env, capture_output=True,
                         text=True, check=False, timeout=HANG_GUARD * pace_s())
    assert run.returncode == 0, run.stderr[-2000:]
    assert "Café GPU ✓" in (out / "report.md").read_text(encoding="utf-8")
    assert (out / "note.txt").read_bytes() == "résumé ✓".encode()
    assert storage.ENCODING == "utf-8"


def _text_io_without_encoding(tree: ast.AST) -> list[int]:
    """Lines of open()/os.fdopen()/Path.open()/read_text()/write_text() calls in text mode with no encoding."""
    lines = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or any(k.arg == "encoding" for k in node.keywords):
            continue
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        owner = getattr(func.value, "id", "") if isinstance(func, ast.Attribute) else ""
        if name in ("read_text", "write_text") and isinstance(func, ast.Attribute) and owner != "storage":
            lines.append(node.lineno)  # storage.write_text is UTF-8 by definition
        elif name == "fdopen" or (name == "open" and owner not in ("os", "Image", "tarfile", "zipfile")):
            mode = node.args[1] if len(node.args) > 1 else next((k.value for k in node.keywords if k.arg == "mode"),
                                                                None)
            modes = [mode.body, mode.orelse] if isinstance(mode, ast.IfExp) else [mode]
            if not all(isinstance(m, ast.Constant) and "b" in str(m.value) for m in modes):
                lines.append(node.lineno)
    return lines


def test_every_text_file_the_package_touches_names_its_encoding() -> None:
    """The whole kind behind the locale test above: no text I/O in densebench/ relies on the locale."""
    found = {str(path.relative_to(REPO)): lines for path in sorted((REPO / "densebench").rglob("*.py"))
             if (lines := _text_io_without_encoding(ast.parse(path.read_text(encoding="utf-8"))))}
    assert found == {}, f"text I/O without encoding= (UTF-8 whatever the locale, see storage.py): {found}"
    sample = ("open(p)\nopen(p, 'rb')\nopen(p, 'w', encoding='utf-8')\nos.open(p, 1)\nPath(p).read_text()\n"
              "os.fdopen(fd, 'w')\nImage.open(p)\nopen(p, 'ab' if a else 'wb')\nopen(p, 'a' if a else 'wb')\n"
              "storage.write_text(p, t)\n")
    assert _text_io_without_encoding(ast.parse(sample)) == [1, 5, 6, 9], "the scan sees what it must"
