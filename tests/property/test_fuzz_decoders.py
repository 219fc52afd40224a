"""The decoder fuzz of ``benchmarks/fuzz.py``: every public decoder, AtrepoErrors only.

The default run fuzzes each target with a fixed seed and 1,500 inputs (a few seconds),
so the contract is checked on every run, and checks that the compiled core and the pure
Python path give the same outcome input by input; ``-m slow`` runs the full 100,000 inputs
per target. The script runs as a subprocess, as a user would run it; its harness (a
non-AtrepoError and a hang are failures, with the input saved; the input that crashes the
process is kept) is checked on fake targets.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from atrepo import _accel
from atrepo.errors import DecodeError

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "fuzz.py"
# every public decoder; a target the script stops running fails this test
TARGETS = {"cbor.decode", "cbor.decode_fast", "datamodel.record_json", "datamodel.from_json",
           "datamodel.to_json", "CID.decode(bytes)", "CID.decode(str)", "syntax.is_*",
           "syntax.parse_at_uri", "syntax.split_repo_key", "crypto.parse_did_key",
           "crypto.parse_multikey", "crypto.parse_legacy_key", "crypto.verify_signature",
           "car.read_car", "car.CarReader", "atrepo.read_car", "mst.walk"}
NEVER_RAISE = {"syntax.is_*"}  # validators answer False, they do not raise


def _fuzz(tmp_path: Path, inputs: int, seed: int, *, only: set[str] | None = None,
          pure: bool = False) -> dict[str, Any]:
    report = tmp_path / f"fuzz-{'pure' if pure else 'default'}.json"
    options = ["--only", ",".join(sorted(only))] if only else []
    env = dict(os.environ, ATREPO_PURE_PYTHON="1" if pure else "")
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--inputs", str(inputs), "--seed", str(seed),
         "--out", str(tmp_path / "failures"), "--json", str(report), *options],
        capture_output=True, text=True, cwd=ROOT, check=False, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    figures: dict[str, Any] = json.loads(report.read_text())
    return figures


def _check(figures: dict[str, Any], inputs: int) -> None:
    assert {t["target"] for t in figures["targets"]} == TARGETS
    seeds = figures["seeds"]
    assert all(count > 0 for count in seeds.values()), seeds  # interop vectors included
    for target in figures["targets"]:
        outcomes = target["outcomes"]
        assert target["inputs"] == inputs == sum(outcomes.values())
        assert target["failures"] == [], target
        assert not [name for name in outcomes if name.startswith("FAIL")], target
        # the mutations both keep some inputs valid and break others
        assert outcomes.get("ok", 0) > 0, target
        if target["target"] not in NEVER_RAISE:
            assert sum(n for name, n in outcomes.items() if name != "ok") > 0, target


def test_every_decoder_fuzzed_with_a_fixed_seed(tmp_path: Path) -> None:
    _check(_fuzz(tmp_path, 1_500, seed=0), 1_500)


CORE_TARGETS = {"car.read_car", "car.CarReader", "atrepo.read_car", "mst.walk"}


def test_compiled_core_and_pure_python_agree_input_by_input(tmp_path: Path) -> None:
    # the core serves reading CARs: on hostile input it must accept and refuse (with the
    # same error class) exactly what the pure Python reference does
    if not _accel.accelerated:
        pytest.skip("the compiled core is not built here; there is one path only")
    core = _fuzz(tmp_path, 500, seed=2, only=CORE_TARGETS)
    pure = _fuzz(tmp_path, 500, seed=2, only=CORE_TARGETS, pure=True)
    assert core["accelerated"] is True and pure["accelerated"] is False
    for mine, reference in zip(core["targets"], pure["targets"], strict=True):
        assert mine["target"] == reference["target"]
        assert mine["outcomes"] == reference["outcomes"], mine["target"]
        assert mine["digest"] == reference["digest"], mine["target"]


@pytest.mark.slow
def test_every_decoder_fuzzed_100k_inputs(tmp_path: Path) -> None:
    _check(_fuzz(tmp_path, 100_000, seed=1), 100_000)


# --- the harness itself ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("atrepo_fuzz_script", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while building
    spec.loader.exec_module(module)
    return module


def _behaviour(value: int, seeds: Any) -> None:
    if value % 3 == 0:
        raise DecodeError("refused")
    if value % 3 == 1:
        raise KeyError(value)


def _hang(value: int, seeds: Any) -> None:
    while True:
        pass


def test_harness_counts_atrepo_errors_and_saves_other_exceptions(script: ModuleType,
                                                                  tmp_path: Path) -> None:
    target = script.Target("fake", lambda rng, seeds: rng.randrange(1000), _behaviour)
    result = script.fuzz(target, None, inputs=300, seed=5, timeout=30.0, out=tmp_path)
    assert result.inputs == 300 and sum(result.outcomes.values()) == 300
    assert set(result.outcomes) == {"DecodeError", "FAIL KeyError", "ok"}
    assert len(result.failures) == result.outcomes["FAIL KeyError"]
    first = Path(result.failures[0])
    assert first.with_name(first.name + ".txt").read_text().isdigit()
    assert "KeyError" in first.with_name(first.name + ".traceback").read_text()


def test_harness_counts_a_hang_as_a_failure(script: ModuleType, tmp_path: Path) -> None:
    old = signal.signal(signal.SIGPROF, script._on_alarm)
    try:
        target = script.Target("hang", lambda rng, seeds: b"\x00", _hang)
        result = script.fuzz(target, None, inputs=2, seed=0, timeout=0.2, out=tmp_path)
    finally:
        signal.signal(signal.SIGPROF, old)
    assert result.outcomes == {"FAIL Hang": 2}
    assert Path(result.failures[0] + ".bin").read_bytes() == b"\x00"


CRASHING_RUN = """
import ctypes, sys
from pathlib import Path
spec = __import__("importlib.util").util.spec_from_file_location("fuzz_script", sys.argv[1])
script = __import__("importlib.util").util.module_from_spec(spec)
sys.modules["fuzz_script"] = script
spec.loader.exec_module(script)

def run(value, seeds):
    if value == b"third":
        ctypes.string_at(0)  # a segfault, as a bug in native code would cause

inputs = iter([b"first", b"second", b"third", b"fourth"])
target = script.Target("boom", lambda rng, seeds: next(inputs), run)
script.fuzz(target, None, inputs=4, seed=0, timeout=30.0, out=Path(sys.argv[2]))
"""


def test_harness_keeps_the_input_that_crashed_the_process(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-c", CRASHING_RUN, str(SCRIPT), str(tmp_path)],
                          capture_output=True, check=False)
    assert proc.returncode == -signal.SIGSEGV
    kept = (tmp_path / "boom-crashed.bin").read_bytes()
    assert kept[8:8 + int.from_bytes(kept[:8], "big")] == b"third"


def test_harness_removes_the_crash_slot_after_a_clean_target(script: ModuleType,
                                                            tmp_path: Path) -> None:
    target = script.Target("calm", lambda rng, seeds: b"x", lambda value, seeds: None)
    assert script.fuzz(target, None, inputs=3, seed=0, timeout=30.0,
                       out=tmp_path).outcomes == {"ok": 3}
    assert list(tmp_path.iterdir()) == []
