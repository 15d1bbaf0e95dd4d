"""Parity metrics: they pass a faithful runner and fail broken ones."""

from __future__ import annotations

import pytest
import torch

from densebench.parity import Thresholds, compare, predict

T = Thresholds()


def reference(n: int = 16, classes: int = 20, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, classes, generator=g) * 3


def test_identical_passes() -> None:
    ref = reference()
    rec = compare(ref, ref.clone(), None, T)
    assert rec["passed"] and rec["top1_agreement"] == 1.0 and rec["logit_error"] == 0.0


def test_small_noise_passes() -> None:
    ref = reference()
    rec = compare(ref, ref + 1e-3 * torch.randn_like(ref), None, T)
    assert rec["passed"], rec["failures"]


def test_permuted_classes_fail() -> None:
    ref = reference()
    rec = compare(ref, ref.roll(1, dims=1), None, T)
    assert not rec["passed"]
    assert rec["top1_agreement"] < 0.5
    assert any("top-1 agreement" in f for f in rec["failures"])


def test_nan_fails() -> None:
    ref = reference()
    bad = ref.clone()
    bad[3, 2] = float("nan")
    rec = compare(ref, bad, None, T)
    assert not rec["passed"] and rec["all_finite"] is False
    assert "NaN" in rec["failures"][0]


def test_input_independent_output_fails_even_when_top1_agrees() -> None:
    # Random weights make every image vote for the same class; a runner that ignores its
    # input then agrees on top-1 but has lost the signal: the logit error catches it.
    ref = reference()
    ref[:, 7] += 100.0
    constant = ref.mean(dim=0, keepdim=True).expand_as(ref).clone()
    rec = compare(ref, constant, None, T)
    assert rec["top1_agreement"] == 1.0
    assert not rec["passed"]
    assert rec["logit_error"] >= 0.99


def test_near_tie_flip_is_tolerated_but_a_real_flip_is_not() -> None:
    ref = torch.zeros(20, 10)
    ref[:, 0] = 5.0
    ref[:, 1] = 4.99  # the baseline itself can barely tell class 0 from 1
    cand = ref.clone()
    cand[0, 1] = 5.001  # flips to class 1 on a near-tie
    rec = compare(ref, cand, None, T)
    assert rec["top1_agreement"] == pytest.approx(0.95) and rec["top1_agreement_tie_aware"] == 1.0
    assert rec["top1_flips"] == 1 and rec["top1_flips_near_tie"] == 1
    cand[1:3, 2] = 9.0  # decisive flips on two images
    rec = compare(ref, cand, None, Thresholds(top1=0.95, logit_error=10.0))
    assert rec["top1_agreement_tie_aware"] == pytest.approx(0.9)
    assert not rec["passed"]


def test_accuracy_with_labels() -> None:
    ref = reference()
    labels = ref.argmax(dim=1)
    rec = compare(ref, ref, labels, T)
    assert rec["accuracy"]["top1"] == 1.0 and rec["accuracy"]["baseline_top5"] == 1.0
    rec = compare(ref, ref, None, T, label_note="synthetic images")
    assert rec["accuracy"] is None and rec["accuracy_reason"] == "synthetic images"


class FixedShapeRunner:
    """Accepts only one batch size, like a traced graph or an engine."""

    def __init__(self, batch: int):
        self.batch = batch
        self.seen: list[int] = []

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.shape[0])
        assert x.shape[0] == self.batch
        return x.flatten(1)[:, :5] * 2

    def logits(self, out: torch.Tensor) -> torch.Tensor:
        return out.float()


def test_predict_pads_the_last_chunk() -> None:
    images = torch.randn(10, 3, 4, 4)
    runner = FixedShapeRunner(4)
    out = predict(runner, images, 4)
    assert runner.seen == [4, 4, 4]
    assert torch.allclose(out, images.flatten(1)[:, :5] * 2)
