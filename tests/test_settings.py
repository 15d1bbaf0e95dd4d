"""Settings parsing and validation: every bad input names what was wrong and what is allowed."""

from __future__ import annotations

import pytest

from densebench.optimizations import names, plan_for, resolve_names
from densebench.settings import OPTIONS, Settings, SettingsError, parse_batch_sizes


def test_defaults() -> None:
    s = Settings.from_mapping({})
    assert s.batch_sizes == (1, 8, 32)
    assert s.image_size == 224
    assert s.device == "auto"
    assert s.optimizations[0] == "baseline"
    assert set(s.optimizations) == set(names())


@pytest.mark.parametrize(("text", "expected"), [("1,8,32", (1, 8, 32)), (" 2 , 4 ", (2, 4)), ("4,4,1", (4, 1))])
def test_batch_sizes_ok(text: str, expected: tuple[int, ...]) -> None:
    assert parse_batch_sizes(text) == expected


@pytest.mark.parametrize(("text", "fragment"), [
    ("0", "0 is not positive"),
    ("-3", "-3 is not positive"),
    ("1.5", "'1.5' is not an integer"),
    ("a", "'a' is not an integer"),
    ("1,,2", "empty entry"),
    ("", "empty entry"),
])
def test_batch_sizes_bad(text: str, fragment: str) -> None:
    with pytest.raises(SettingsError) as err:
        parse_batch_sizes(text)
    assert fragment in str(err.value)
    assert "allowed: a comma list of positive integers" in str(err.value)


@pytest.mark.parametrize(("values", "fragments"), [
    ({"image_size": "16"}, ["--densebench-image-size: 16 is too small", ">= 32"]),
    ({"image_size": "big"}, ["'big' is not an integer"]),
    ({"optimizations": "baseline,warp"}, ["unknown optimization 'warp'", "allowed: baseline, amp"]),
    ({"optimizations": "fp16+amp"}, ["cannot be stacked", "amp autocasts from FP32 weights"]),
    ({"optimizations": "compile+jit"}, ["both backends"]),
    ({"optimizations": "baseline+amp"}, ["baseline is the strict FP32 reference"]),
    ({"optimizations": "amp+amp"}, ["names a technique twice"]),
    ({"optimizations": "tensorrt+amp"}, ["use tensorrt+fp16"]),
    ({"device": "tpu"}, ["'tpu' is not a device", "auto, cpu, cuda, cuda:N"]),
    ({"device": "cuda:x"}, ["bad GPU index"]),
    ({"dataset": "/no/such/dir"}, ["'/no/such/dir' is not an existing directory", "ImageFolder"]),
    ({"weights": "/no/such/file.pt"}, ["'/no/such/file.pt' is not an existing file", "auto, imagenet, random"]),
    ({"parity_top1": "1.5"}, ["out of range"]),
    ({"crosscheck": "maybe"}, ["not a boolean"]),
])
def test_bad_values(values: dict[str, str], fragments: list[str]) -> None:
    with pytest.raises(SettingsError) as err:
        Settings.from_mapping(values)
    for fragment in fragments:
        assert fragment in str(err.value)


def test_all_problems_reported_together() -> None:
    with pytest.raises(SettingsError) as err:
        Settings.from_mapping({"image_size": "8", "batch_sizes": "0", "optimizations": "nope"})
    text = str(err.value)
    assert "image-size" in text and "batch-sizes" in text and "unknown optimization 'nope'" in text


def test_cuda_without_gpu_is_refused() -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(SettingsError) as err:
        Settings.from_mapping({"device": "cuda"})
    assert "CUDA is not available here" in str(err.value)
    assert "--densebench-device cpu" in str(err.value)


def test_precedence_flag_env_ini_default(monkeypatch: pytest.MonkeyPatch) -> None:
    ini = {"batch_sizes": "3"}
    flag: dict[str, str] = {}

    def build() -> Settings:
        return Settings.from_sources(lambda o: flag.get(o.key), lambda o: ini.get(o.key))

    assert build().batch_sizes == (3,)
    monkeypatch.setenv("DENSEBENCH_BATCH_SIZES", "5")
    assert build().batch_sizes == (5,)
    flag["batch_sizes"] = "7"
    assert build().batch_sizes == (7,)


def test_an_overridden_default_still_yields_to_flag_env_and_ini(monkeypatch: pytest.MonkeyPatch) -> None:
    """densebench run makes isolation the default; a user's ini, environment or flag still decides."""
    from densebench import settings as settings_mod

    monkeypatch.delenv("DENSEBENCH_ISOLATE", raising=False)
    monkeypatch.setattr(settings_mod, "_DEFAULT_OVERRIDES", {})
    ini: dict[str, str] = {}
    flag: dict[str, str] = {}

    def build() -> Settings:
        return Settings.from_sources(lambda o: flag.get(o.key), lambda o: ini.get(o.key))

    assert build().isolate is False
    settings_mod.override_default("isolate", "true")
    assert build().isolate is True
    ini["isolate"] = "false"
    assert build().isolate is False
    del ini["isolate"]
    monkeypatch.setenv("DENSEBENCH_ISOLATE", "false")
    assert build().isolate is False
    monkeypatch.delenv("DENSEBENCH_ISOLATE")
    flag["isolate"] = "false"
    assert build().isolate is False
    with pytest.raises(SettingsError, match="unknown densebench setting 'isolation'.*allowed: .*isolate"):
        settings_mod.override_default("isolation", "true")


def test_stacks_and_all() -> None:
    plan = plan_for("channels_last+amp+compile")
    assert (plan.memory_format, plan.autocast, plan.backend) == ("channels_last", True, "compile")
    assert resolve_names("all") == tuple(names())
    assert resolve_names("baseline,channels_last+amp,baseline") == ("baseline", "channels_last+amp")


def test_every_option_has_flag_env_and_ini() -> None:
    for opt in OPTIONS:
        assert opt.flag.startswith("--densebench-")
        assert opt.env.startswith("DENSEBENCH_")
        assert opt.ini.startswith("densebench_")
        assert opt.help


def test_readme_option_table_is_generated_from_the_declarations() -> None:
    """The README's table is exactly what the OPTIONS declarations produce (regenerate it with
    ``python -c 'from densebench.settings import markdown_table; print(markdown_table())'``)."""
    from pathlib import Path

    from densebench.settings import markdown_table

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    assert markdown_table() in readme, "README's option table differs from densebench/settings.py OPTIONS"
    for opt in OPTIONS:
        assert f"| `{opt.flag}` | `{opt.env}` | `{opt.default}` |" in readme


def test_settings_has_no_defaults_of_its_own() -> None:
    """Each option's default lives only in its declaration."""
    import dataclasses

    fields = dataclasses.fields(Settings)
    assert [f.name for f in fields] == [o.key for o in OPTIONS]
    assert all(f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING for f in fields)
