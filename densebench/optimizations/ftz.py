"""``ftz``: flush denormal floats to zero on the CPU while the model runs (``torch.set_flush_denormal``).

Denormal (subnormal) floats take a slow microcode path on x86 CPUs. With random weights and
Gaussian-noise inputs, DenseNet-121 ran about 25% slower on the development machine's CPU than
with image-like inputs (107 vs 86 ms at 128 px, batch 4), and flushing denormals removed the gap
(84.5 ms; issue 14). Image-like inputs rarely produce denormals, so on real data the gain is
usually small; the parity check shows whether flushing changed the predictions. Stacks with any
other CPU technique (``ftz+channels_last+bf16``). ``extra_info.denormals_flushed`` says whether
it was on during the timed rounds.
"""

from .base import Plan, Requirements, Technique, register


def _apply(plan: Plan) -> Plan:
    return plan.with_option("flush_denormal", True)


register(Technique(
    rank=27,
    name="ftz",
    summary="flush denormal floats to zero (torch.set_flush_denormal) while it runs (CPU)",
    apply=_apply,
    requires=Requirements(devices=frozenset({"cpu"})),
))
