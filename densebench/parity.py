"""Parity: do an optimization's predictions match the strict-FP32 baseline's?

On a fixed evaluation set, with the baseline's top-1 class as the reference label:

- ``top1_agreement``: fraction of images whose top-1 class is the baseline's top-1;
- ``top1_agreement_tie_aware``: the same, but a flip between two classes the baseline
  itself could hardly tell apart (their logit gap below ``tie_band`` x the image's
  logit range) is not counted against it. This is what the top-1 threshold checks:
  random weights and BF16 produce such near-ties often, trained weights rarely;
- ``top5_agreement``: fraction of images whose top-5 contains the baseline's top-1;
- ``logit_error``: ||logits - baseline|| / ||baseline - mean over images||, the error
  relative to how much the logits vary between images. It catches a runner that lost
  the input-dependent signal even when random weights make every image vote for the
  same class (0 = identical, ~1 or more = the signal is gone).

With ImageNet labels, top-1/top-5 accuracy of both is reported too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Thresholds:
    top1: float = 0.95
    top5: float = 0.99
    logit_error: float = 0.5
    tie_band: float = 0.005


def predict(runner: Any, images: Any, batch_size: int) -> Any:
    """float32 CPU logits of ``runner`` on ``images``, run in chunks of ``batch_size``.

    The last chunk is padded (with the first images) to the full batch size, so runners
    specialised to one shape (TorchScript traces, engines, CUDA graphs) see only that shape.
    """
    import torch  # heavy, optional

    out = []
    n = len(images)
    for start in range(0, n, batch_size):
        chunk = images[start:start + batch_size]
        real = len(chunk)
        if real < batch_size:
            reps = -(-batch_size // n)
            chunk = torch.cat([chunk, torch.cat([images] * reps)[: batch_size - real]])
        logits = runner.logits(runner(runner.prepare(chunk)))
        out.append(logits[:real])
    return torch.cat(out)


def _topk_accuracy(logits: Any, labels: Any, k: int) -> float:
    top = logits.topk(k, dim=1).indices
    return float((top == labels.view(-1, 1)).any(dim=1).float().mean())


def _logit_error(reference: Any, logits: Any, finite: bool) -> float:
    """||logits - baseline|| / ||baseline - mean over images||; inf when the logits are not all finite,
    or when the baseline has no signal (all images alike) but the logits still differ from it."""
    signal = (reference - reference.mean(dim=0, keepdim=True)).norm()
    error = (logits - reference).norm()
    logit_error = float(error / signal) if float(signal) > 0 else (0.0 if float(error) == 0 else math.inf)
    if not finite:
        logit_error = math.inf
    return logit_error


def _failures(finite: bool, top1_tie_aware: float, flips: int, near_ties: int, top5: float, logit_error: float,
              thresholds: Thresholds) -> list[str]:
    """One sentence per threshold that does not hold; empty when parity passed."""
    failures = []
    if not finite:
        failures.append("logits contain NaN or Inf")
    if top1_tie_aware < thresholds.top1:
        failures.append(f"top-1 agreement {top1_tie_aware:.3f} < {thresholds.top1} "
                        f"({flips} flips, {near_ties} of them near-ties)")
    if top5 < thresholds.top5:
        failures.append(f"top-5 agreement {top5:.3f} < {thresholds.top5}")
    if not math.isfinite(logit_error) or logit_error > thresholds.logit_error:
        failures.append(f"logit error {logit_error:.3g} > {thresholds.logit_error}")
    return failures


def _accuracy(reference: Any, logits: Any, labels: Any | None, label_note: str | None) -> dict[str, Any]:
    """ImageNet top-1/top-5 accuracy of both, or ``accuracy: None`` and why when there are no labels."""
    if labels is None:
        return {"accuracy": None, "accuracy_reason": label_note or "the dataset has no ImageNet-1k labels"}
    return {"accuracy": {
        "top1": _topk_accuracy(logits, labels, 1), "top5": _topk_accuracy(logits, labels, 5),
        "baseline_top1": _topk_accuracy(reference, labels, 1),
        "baseline_top5": _topk_accuracy(reference, labels, 5),
    }}


def compare(reference: Any, logits: Any, labels: Any | None, thresholds: Thresholds,
            label_note: str | None = None) -> dict[str, Any]:
    """Parity record for ``extra_info['parity']``; ``passed`` says whether all thresholds hold.

    ``reference`` and ``logits`` are (images, classes) float tensors: the baseline's and the candidate's.
    """
    import torch  # heavy, optional

    if reference.shape != logits.shape:
        raise ValueError(f"logits shape {tuple(logits.shape)} differs from the baseline's {tuple(reference.shape)}")
    ref_top1 = reference.argmax(dim=1)
    finite = bool(torch.isfinite(logits).all())
    cand_top1 = logits.argmax(dim=1)
    flipped = cand_top1 != ref_top1
    top1 = 1.0 - float(flipped.float().mean())
    rows = torch.arange(len(reference))
    gap = reference[rows, ref_top1] - reference[rows, cand_top1]
    span = reference.max(dim=1).values - reference.min(dim=1).values
    near_tie = flipped & (gap <= thresholds.tie_band * span)
    top1_tie_aware = 1.0 - float((flipped & ~near_tie).float().mean())
    top5 = _topk_accuracy(logits, ref_top1, min(5, logits.shape[1]))
    logit_error = _logit_error(reference, logits, finite)
    diff = (logits - reference).abs()
    record: dict[str, Any] = {
        "reference": "baseline",
        "samples": int(reference.shape[0]),
        "top1_agreement": top1,
        "top1_agreement_tie_aware": top1_tie_aware,
        "top1_flips": int(flipped.sum()),
        "top1_flips_near_tie": int(near_tie.sum()),
        "top5_agreement": top5,
        "logit_error": logit_error if math.isfinite(logit_error) else None,
        "max_abs_diff": float(diff.max()) if finite else None,
        "mean_abs_diff": float(diff.mean()) if finite else None,
        "all_finite": finite,
        "thresholds": {"top1_agreement_tie_aware": thresholds.top1, "top5_agreement": thresholds.top5,
                       "logit_error": thresholds.logit_error, "tie_band": thresholds.tie_band},
    }
    failures = _failures(finite, top1_tie_aware, record["top1_flips"], record["top1_flips_near_tie"], top5,
                         logit_error, thresholds)
    record["passed"] = not failures
    record["failures"] = failures
    record.update(_accuracy(reference, logits, labels, label_note))
    return record
