"""Model weights: seeded random, state-dict files (old keys, wrappers), refusals, auto fallback."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch
from torchvision.models import densenet121

from densebench.model import WeightsError, build_model, upgrade_state_dict_keys


@pytest.fixture(scope="module")
def reference_state() -> dict[str, torch.Tensor]:
    torch.manual_seed(123)
    return densenet121(weights=None).state_dict()


def same_params(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> bool:
    return all(torch.equal(v, state[k]) for k, v in model.state_dict().items())


def test_random_is_seeded() -> None:
    a, info = build_model("random", seed=3)
    b, _ = build_model("random", seed=3)
    c, _ = build_model("random", seed=4)
    assert info.source == "random" and info.seed == 3
    assert same_params(a, b.state_dict())
    assert not same_params(a, c.state_dict())
    assert not a.training


def test_state_dict_file(tmp_path: Path, reference_state: dict) -> None:
    path = tmp_path / "w.pt"
    torch.save(reference_state, path)
    model, info = build_model(str(path))
    assert info.source == "file" and info.path == str(path)
    assert same_params(model, reference_state)


def test_old_key_names_and_wrappers(tmp_path: Path, reference_state: dict) -> None:
    old = {}
    for key, value in reference_state.items():
        # torchvision's old checkpoints say 'norm.1' where the model now says 'norm1'
        key = key.replace(".norm1.", ".norm.1.").replace(".conv2.", ".conv.2.")
        old["module." + key] = value
    path = tmp_path / "old.pth"
    torch.save({"state_dict": old}, path)
    assert upgrade_state_dict_keys(old).keys() == reference_state.keys()
    model, _ = build_model(str(path))
    assert same_params(model, reference_state)


def test_wrong_shapes(tmp_path: Path) -> None:
    path = tmp_path / "ten_classes.pt"
    torch.save(densenet121(weights=None, num_classes=10).state_dict(), path)
    with pytest.raises(WeightsError, match="does not fit DenseNet-121.*size mismatch"):
        build_model(str(path))


def test_not_a_state_dict(tmp_path: Path) -> None:
    path = tmp_path / "list.pt"
    torch.save([1, 2, 3], path)
    with pytest.raises(WeightsError, match="does not hold a state dict"):
        build_model(str(path))


def test_garbage_file(tmp_path: Path) -> None:
    path = tmp_path / "garbage.pt"
    path.write_bytes(b"\x00\x01 definitely not torch")
    with pytest.raises(WeightsError, match="cannot read weights file|refusing to load"):
        build_model(str(path))


class _Exploit:
    def __reduce__(self):  # runs on unpickling, unless weights_only refuses it
        import os

        return (os.system, ("touch densebench-pwned",))


def test_code_executing_pickle_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.pt"
    torch.save({"features.conv0.weight": _Exploit()}, path, pickle_module=pickle)
    with pytest.raises(WeightsError, match="refusing to load .*weights_only=True"):
        build_model(str(path))
    assert not (tmp_path / "densebench-pwned").exists(), "the pickle's payload must not run"


def test_auto_offline_falls_back_to_random(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))  # empty cache
    model, info = build_model("auto", seed=0, offline=True)
    assert info.source == "random" and info.requested == "auto"
    assert "offline" in info.fallback_reason
    with pytest.raises(WeightsError, match="--densebench-weights imagenet: offline"):
        build_model("imagenet", offline=True)
