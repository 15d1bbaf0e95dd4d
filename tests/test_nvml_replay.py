"""Recorded NVML readings replayed through the telemetry code (issue 12): power, energy per image,
throttle reasons, inclusive memory, MIG handles, the pre-R535 fallback.

``ReplayNvml`` is the real pynvml module (its constants, error classes, ctypes sample structs and
friendly objects) with the device calls answered from a recording in ``tests/data/nvml/`` instead of
the driver. A recording holds what NVML returned at the start and at the end of a timed window and
its sample buffers (``scripts/nvml_record.py`` writes one on a GPU). Each check below computes the
expected figure from the recording itself, so it holds for every file in that directory.
"""

from __future__ import annotations

import json
import os
import types
from pathlib import Path
from typing import Any

import pytest

from densebench import nvml as nv
from densebench import report

pynvml = pytest.importorskip("pynvml")

# The committed recordings, and more from a directory (scripts/gpu-check.sh replays its fresh one).
RECORDINGS = sorted((Path(__file__).parent / "data" / "nvml").glob("*.json")) + (
    sorted(Path(os.environ["NVML_RECORDINGS"]).glob("*.json")) if os.environ.get("NVML_RECORDINGS") else [])


class ReplayNvml(types.ModuleType):
    """pynvml, with device calls answered from ``recording`` (start reads, then end reads)."""

    def __init__(self, recording: dict[str, Any], old_driver: bool = False, no_energy: bool = False):
        super().__init__("pynvml_replay")
        self.__dict__.update({k: v for k, v in vars(pynvml).items() if not k.startswith("__")})
        self.rec, self.old_driver, self.no_energy = recording, old_driver, no_energy
        self.calls: dict[str, int] = {}
        for name in ("nvmlDeviceGetTotalEnergyConsumption", "nvmlDeviceGetCurrentClocksEventReasons",
                     "nvmlDeviceGetCurrentClocksThrottleReasons", "nvmlDeviceGetTemperature",
                     "nvmlDeviceGetMemoryInfo", "nvmlDeviceGetComputeRunningProcesses", "nvmlDeviceGetSamples"):
            setattr(self, name, getattr(self, "_" + name))

    def _point(self, name: str) -> dict[str, Any]:
        """The start reads on a function's first call, the end reads on its second."""
        error = self.rec.get("errors", {}).get(name)
        if error is not None:
            raise pynvml.NVMLError(error)
        n = self.calls[name] = self.calls.get(name, 0) + 1
        return self.rec["points"][min(n, 2) - 1]

    def _nvmlDeviceGetTotalEnergyConsumption(self, h: Any) -> int:
        if self.no_energy:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
        return self._point("nvmlDeviceGetTotalEnergyConsumption")["energy_mj"]

    def _nvmlDeviceGetCurrentClocksEventReasons(self, h: Any) -> int:
        if self.old_driver:  # what pynvml raises when libnvidia-ml lacks the symbol (drivers before R535)
            raise pynvml.NVMLError(pynvml.NVML_ERROR_FUNCTION_NOT_FOUND)
        return self._point("nvmlDeviceGetCurrentClocksEventReasons")["clocks_event_reasons"]

    def _nvmlDeviceGetCurrentClocksThrottleReasons(self, h: Any) -> int:
        return self._point("nvmlDeviceGetCurrentClocksThrottleReasons")["clocks_throttle_reasons"]

    def _nvmlDeviceGetTemperature(self, h: Any, sensor: int) -> int:
        assert sensor == pynvml.NVML_TEMPERATURE_GPU
        return self._point("nvmlDeviceGetTemperature")["temp_c"]

    def _nvmlDeviceGetMemoryInfo(self, h: Any) -> Any:
        return types.SimpleNamespace(used=self._point("nvmlDeviceGetMemoryInfo")["device_used"])

    def _nvmlDeviceGetComputeRunningProcesses(self, h: Any) -> list[Any]:
        procs = self._point("nvmlDeviceGetComputeRunningProcesses")["processes"]
        return [pynvml.nvmlFriendlyObject({"pid": pid, "usedGpuMemory": used}) for pid, used in procs]

    def _nvmlDeviceGetSamples(self, h: Any, sampling_type: int, last_seen_us: int) -> tuple[int, list[Any]]:
        names = [k for k in self.rec["samples"] if getattr(pynvml, k) == sampling_type]
        if not names:  # not recorded: what NVML says for a sample type this GPU does not keep
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
        value_type, samples = self.rec["samples"][names[0]]
        member = nv._VALUE_MEMBER[value_type]
        out = []
        for ts, value in samples:
            if ts > last_seen_us:  # NVML returns only samples newer than lastSeenTimeStamp
                sample = pynvml.c_nvmlSample_t()
                sample.timeStamp = ts
                setattr(sample.sampleValue, member, value)
                out.append(sample)
        return value_type, out


def replay(recording: dict[str, Any], monkeypatch: pytest.MonkeyPatch, **kw: Any) -> tuple[nv.GpuWindow, float]:
    """Run a GpuWindow over the recording; the CPU clock reads the recorded start and end."""
    fake = ReplayNvml(recording, **kw)
    clock = iter(p["t_us"] / 1e6 for p in recording["points"])
    monkeypatch.setattr(nv, "time", types.SimpleNamespace(time=lambda: next(clock)))
    win = nv.GpuWindow(fake, handle=object(), pid=recording["pid"])
    win.start()
    win.stop()
    start, end = (p["t_us"] for p in recording["points"])
    return win, (end - start) / 1e6


def in_window(recording: dict[str, Any], name: str) -> list[float]:
    start, end = (p["t_us"] for p in recording["points"])
    return [v for ts, v in recording["samples"].get(name, [0, []])[1] if start < ts <= end]


@pytest.fixture(params=RECORDINGS, ids=[p.stem for p in RECORDINGS])
def recording(request: pytest.FixtureRequest) -> dict[str, Any]:
    return json.loads(request.param.read_text())


def test_power_and_energy_per_image_from_the_energy_counter(recording, monkeypatch) -> None:
    if "nvmlDeviceGetTotalEnergyConsumption" in recording.get("errors", {}):
        pytest.skip("this GPU has no energy counter (the next test covers it)")
    win, window_s = replay(recording, monkeypatch)
    gpu = nv.gpu_result(win, recording["images"], window_s)
    start, end = recording["points"]
    energy_j = (end["energy_mj"] - start["energy_mj"]) / 1000
    assert gpu["energy_source"] == "nvml_total_energy_counter" and gpu["energy_j"] == pytest.approx(energy_j)
    assert gpu["energy_per_image_j"] == pytest.approx(energy_j / recording["images"])
    assert gpu["power_mean_w"] == pytest.approx(energy_j / window_s)
    assert gpu["power_source"] == "energy_counter_over_window"
    assert gpu["power_samples"] == len(in_window(recording, "NVML_TOTAL_POWER_SAMPLES"))
    assert gpu["window_shorter_than_power_averaging"] is (window_s < nv.POWER_AVERAGING_S)
    util = in_window(recording, "NVML_GPU_UTILIZATION_SAMPLES")
    if util:
        assert gpu["utilization_mean_pct"] == pytest.approx(sum(util) / len(util))
        assert gpu["utilization_max_pct"] == max(util), "samples stamped outside the window are left out"
    else:
        assert gpu["utilization_mean_pct"] is None and gpu["reasons"]["utilization_mean_pct"]
    clocks = in_window(recording, "NVML_PROCESSOR_CLK_SAMPLES")
    if clocks:
        assert gpu["sm_clock_min_mhz"] == min(clocks)
    else:
        assert gpu["sm_clock_min_mhz"] is None and gpu["reasons"]["sm_clock_min_mhz"]
    temps = [p["temp_c"] for p in recording["points"] if p["temp_c"] is not None]
    assert gpu["temperature_max_c"] == (max(temps) if temps else None)


def test_power_from_samples_inside_the_window_without_an_energy_counter(recording, monkeypatch) -> None:
    win, window_s = replay(recording, monkeypatch, no_energy=True)
    gpu = nv.gpu_result(win, recording["images"], window_s)
    power_w = [v / 1000 for v in in_window(recording, "NVML_TOTAL_POWER_SAMPLES")]
    if not power_w:
        assert gpu["power_mean_w"] is None and gpu["reasons"]["power_mean_w"]
        return
    assert gpu["power_source"] == "nvml_power_samples"
    assert gpu["power_mean_w"] == pytest.approx(sum(power_w) / len(power_w))
    assert gpu["energy_source"] == "integrated_power_samples"
    assert gpu["energy_per_image_j"] == pytest.approx(gpu["power_mean_w"] * window_s / recording["images"])
    short = nv.gpu_result(win, recording["images"], 0.25)
    assert short["window_shorter_than_power_averaging"] is True


@pytest.mark.parametrize("old_driver", [False, True], ids=["r535+", "pre-r535"])
def test_throttle_reasons_one_name_per_bit_gpu_idle_apart(recording, monkeypatch, old_driver: bool) -> None:
    win, window_s = replay(recording, monkeypatch, old_driver=old_driver)
    gpu = nv.gpu_result(win, recording["images"], window_s)
    new_call_missing = recording["points"][0].get("clocks_event_reasons") is None
    key = "clocks_throttle_reasons" if old_driver or new_call_missing else "clocks_event_reasons"
    mask = 0
    for point in recording["points"]:
        mask |= point[key]
    bits = [1 << i for i in range(64) if mask >> i & 1]
    expected = sorted(nv.throttle_bits(pynvml)[b] for b in bits if b != pynvml.nvmlClocksEventReasonGpuIdle)
    assert gpu["throttle_reasons"] == expected
    assert "GpuIdle" not in gpu["throttle_reasons"]
    assert gpu["gpu_idle_seen"] is bool(mask & pynvml.nvmlClocksEventReasonGpuIdle)
    assert "throttle_reasons" not in gpu["reasons"], "the old call answered where the new one is missing"
    assert ("nvmlDeviceGetCurrentClocksThrottleReasons" in win.nvml.calls) is (old_driver or new_call_missing)


def test_one_name_per_bit() -> None:
    bits = nv.throttle_bits(pynvml)
    assert bits[pynvml.nvmlClocksEventReasonApplicationsClocksSetting] == "ApplicationsClocksSetting"
    assert "UserDefinedClocks" not in bits.values(), "a deprecated alias of the same bit"
    assert len(bits) == len(set(bits.values()))
    assert nv.throttle_names(pynvml, 0x2 | 0x1) == (["ApplicationsClocksSetting"], True)


def test_inclusive_memory_beside_torch_and_the_per_gb_ranking(recording, monkeypatch) -> None:
    win, _ = replay(recording, monkeypatch)
    mem = win.memory()
    start, end = recording["points"]
    mine = [used for p in (start, end) for pid, used in p["processes"] if pid == recording["pid"]]
    assert mem["device_process_used_mb"] == pytest.approx(max(mine) / 2**20)
    assert mem["device_used_mb_max"] == pytest.approx(max(start["device_used"], end["device_used"]) / 2**20)
    torch_reserved = mem["device_process_used_mb"] / 3  # torch sees a third of what the process holds
    assert nv.inclusive_peak(torch_reserved, mem["device_process_used_mb"]) == (mem["device_process_used_mb"],
                                                                                "nvml_process_used")
    assert nv.inclusive_peak(500.0, None) == (500.0, "torch_peak_reserved")
    # the report ranks throughput per GB on the inclusive figure, not torch's allocator peak
    doc = {"benchmarks": [_bench("tensorrt", 2000.0, allocated=200.0, inclusive=mem["device_process_used_mb"]),
                          _bench("baseline", 1500.0, allocated=900.0, inclusive=1400.0)]}
    lines = report.insights(report.records_from(doc, Path("x.json")), None)
    assert any("most throughput per GB of peak memory: **baseline**" in line for line in lines), lines


def test_a_process_nvml_does_not_list_has_a_reason(recording, monkeypatch) -> None:
    recording = {**recording, "pid": 999_999}
    win, _ = replay(recording, monkeypatch)
    mem = win.memory()
    assert mem["device_process_used_mb"] is None
    assert "does not list this process (PID 999999)" in mem["reasons"]["device_process_used_mb"]


def _bench(name: str, throughput: float, allocated: float, inclusive: float) -> dict[str, Any]:
    return {"extra_info": {"optimization": name, "batch_size": 32, "device_name": "NVIDIA H200",
                           "throughput_samples_per_s": throughput, "latency_ms": {"p50": 1.0, "p99": 2.0},
                           "memory": {"device_peak_allocated_mb": allocated, "device_inclusive_peak_mb": inclusive},
                           "parity": {"passed": True}, "precision": "fp32"}}


class MigNvml(types.ModuleType):
    """pynvml with one GPU in MIG mode holding two slices; the CUDA device is the second slice."""

    def __init__(self, mig_enabled: bool = True):
        super().__init__("pynvml_mig")
        self.__dict__.update({k: v for k, v in vars(pynvml).items() if not k.startswith("__")})
        self.mig_enabled = mig_enabled
        self.nvmlDeviceGetHandleByUUID = lambda uuid: (_ for _ in ()).throw(
            pynvml.NVMLError(pynvml.NVML_ERROR_NOT_FOUND))
        self.nvmlDeviceGetHandleByPciBusId = lambda bus: "board"
        self.nvmlDeviceGetMigMode = lambda h: [int(self.mig_enabled), int(self.mig_enabled)]
        self.nvmlDeviceGetMaxMigDeviceCount = lambda h: 7
        slices = {0: "slice-a", 3: "slice-b"}
        uuids = {"slice-a": b"MIG-aaaaaaaa-0000", "slice-b": b"MIG-bbbbbbbb-1111"}

        def by_index(h: Any, i: int) -> str:
            if i not in slices:
                raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_FOUND)
            return slices[i]

        self.nvmlDeviceGetMigDeviceHandleByIndex = by_index
        self.nvmlDeviceGetUUID = lambda h: uuids[h]


def test_a_mig_slice_gets_its_own_handle_not_the_board() -> None:
    assert nv.board_handle(MigNvml(), "bbbbbbbb-1111", "00000000:01:00.0", 0) == ("slice-b", None)
    handle, reason = nv.board_handle(MigNvml(), "cccccccc-2222", "00000000:01:00.0", 0)
    assert handle is None and "no MIG slice has the CUDA device's UUID cccccccc-2222" in reason
    assert nv.board_handle(MigNvml(mig_enabled=False), "bbbbbbbb-1111", "00000000:01:00.0", 0) == ("board", None)
