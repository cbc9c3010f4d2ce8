"""The C SDK (sdk/c/rlay.h) with the real toolchain: it compiles as C99 and as C++ without a
warning, its unit tests pass, its conformance runner passes every golden vector (spec §12), and
all of that again under ASan+UBSan; a short libFuzzer run over the decoder finds nothing.

In CI (CI=true) a missing gcc/g++/make/clang fails these tests; elsewhere they skip.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import IN_CI, require_tool

import rlay
from rlay.testing.conformance import conformance_lines, run_conformance, space_lines

ROOT = Path(__file__).resolve().parents[2]
SDK = ROOT / "sdk" / "c"
SAN_ENV = {
    **os.environ,
    "ASAN_OPTIONS": "detect_leaks=1:abort_on_error=1",
    "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1",
}


def make(out: Path, *targets: str, extra: tuple[str, ...] = ()) -> None:
    """Runs sdk/c's Makefile into ``out``; a failure shows the compiler's output."""
    require_tool("make")
    cmd = ["make", "-C", str(SDK), f"OUT={out}", f"PYTHON={sys.executable}", *extra, *targets]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> Path:
    require_tool("gcc")
    require_tool("g++")
    out = tmp_path_factory.mktemp("c-plain")
    make(out, "all", extra=("CC=gcc", "CXX=g++"))
    return out


@pytest.fixture(scope="module")
def asan(tmp_path_factory: pytest.TempPathFactory) -> Path:
    require_tool("gcc")
    out = tmp_path_factory.mktemp("c-asan")
    make(out, "asan", extra=("CC=gcc",))
    return out / "asan"


def compile_tu(tmp_path: Path, compiler: str, args: list[str], sources: dict[str, str]) -> None:
    files = []
    for name, text in sources.items():
        (tmp_path / name).write_text(text)
        files.append(str(tmp_path / name))
    cmd = [compiler, *args, f"-I{SDK}", *files, "-o", str(tmp_path / "a.out"), "-lm"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{' '.join(cmd)}:\n{proc.stderr[-4000:]}"


IMPL = '#define RLAY_IMPLEMENTATION\n#include "rlay.h"\n'
USER = (
    '#include "rlay.h"\n'
    "int user(void) { rlay_ctx *c = rlay_new(); int e = rlay_error(c); rlay_free(c); return e; }\n"
)
MAIN = USER.replace("int user(void)", "int main(void)")


@pytest.mark.parametrize(
    "compiler,args",
    [
        ("gcc", ["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", "-O2"]),
        ("gcc", ["-std=c11", "-Wall", "-Wextra", "-Werror", "-O2"]),
        ("g++", ["-x", "c++", "-std=c++11", "-Wall", "-Wextra", "-Werror", "-O2"]),
        ("g++", ["-x", "c++", "-std=c++17", "-Wall", "-Wextra", "-Werror", "-O2"]),
    ],
    ids=["c99-pedantic", "c11", "c++11", "c++17"],
)
def test_header_compiles_without_warnings(tmp_path: Path, compiler: str, args: list[str]) -> None:
    """One translation unit holds the implementation; another only uses the API; they link."""
    require_tool(compiler)
    compile_tu(tmp_path, compiler, args, {"impl.c": IMPL, "main.c": MAIN})


def test_header_with_clang(tmp_path: Path) -> None:
    require_tool("clang")
    compile_tu(
        tmp_path,
        "clang",
        ["-std=c99", "-Wall", "-Wextra", "-Werror", "-O2"],
        {"impl.c": IMPL, "main.c": MAIN},
    )


def test_unit_tests(plain: Path) -> None:
    proc = subprocess.run([str(plain / "unit")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.rstrip().endswith(", 0 failed"), proc.stdout[-4000:]
    passed = int(proc.stdout.rstrip().splitlines()[-1].split()[0])
    assert passed > 200, proc.stdout[-2000:]


def test_unit_tests_under_sanitizers(asan: Path) -> None:
    proc = subprocess.run([str(asan / "unit")], capture_output=True, text=True, timeout=300, env=SAN_ENV)
    assert proc.returncode == 0 and proc.stdout.rstrip().endswith(", 0 failed"), (
        proc.stdout[-3000:] + proc.stderr[-5000:]
    )


@pytest.mark.parametrize("runner", ["rlay_conformance", "conformance_cxx"], ids=["c", "c++"])
def test_golden_vectors(plain: Path, runner: str) -> None:
    """Every vector line of spec/vectors, for both roles (the runner plays agent receivers too)."""
    lines = conformance_lines()
    assert len(lines) > 100, "spec/vectors holds fewer lines than expected"
    failures = run_conformance([str(plain / runner)], lines=lines)
    assert not failures, "\n".join(failures[:30])


def test_golden_vectors_under_sanitizers(asan: Path) -> None:
    failures = run_conformance([str(asan / "rlay_conformance")], env=SAN_ENV, timeout=60)
    assert not failures, "\n".join(failures[:30])


RUNNER_LINES = [
    # (input line, expected answer prefix): the runner itself, on hand-made frames of spec §2-§6
    ("roundtrip 524c2400000000000900000081a576616c7565d005 524c2400000000000800000081a576616c756505", "ok"),
    ("roundtrip 524c2400000000000900000081a576616c7565d005 524c2400000000000800000081a576616c756506", "fail"),
    # a STEP_RESULT whose reward is the int 1 re-encodes with the float 1.0 (§5)
    (
        "roundtrip 524c2100000000002b000000"
        "85a36f6273c0a672657761726401aa7465726d696e61746564c2a97472756e6361746564c3a4696e666f80"
        " 524c21000000000033000000"
        "85a36f6273c0a6726577617264cb3ff0000000000000aa7465726d696e61746564c2a97472756e6361746564c3a4696e666f80",
        "ok",
    ),
    ("reject 474554202f20485454502f312e310d0a BAD_MAGIC - -", "ok"),
    ("reject 524c1100000000000100 TRUNCATED - -", "ok"),
    ("reject 524c1100000000000100 BAD_MAGIC - -", "fail expected BAD_MAGIC, got TRUNCATED"),
    ("reject 524c11000000000001000000c0 BAD_FIELD - -", "ok"),
    ("reject 524c11000000000001000000c0 UNEXPECTED_MESSAGE env hello", "ok"),
    ("reject  TRUNCATED - -", "fail accepted"),  # an empty stream is an orderly end
    ("reject zz BAD_MAGIC - -", "fail bad hex"),
    ("bogus 00", "fail unknown command"),
    ("reject 00 BAD_MAGIC robot -", "fail unknown role"),
]


def test_runner_answers_one_line_per_line(plain: Path) -> None:
    stdin = "".join(line + "\n" for line, _ in RUNNER_LINES)
    proc = subprocess.run(
        [str(plain / "rlay_conformance")], input=stdin, capture_output=True, text=True, timeout=60
    )
    answers = proc.stdout.splitlines()
    assert proc.returncode == 0 and len(answers) == len(RUNNER_LINES), proc.stdout + proc.stderr
    for (line, want), got in zip(RUNNER_LINES, answers, strict=True):
        assert got.startswith(want), f"{line[:80]}: answered {got!r}, expected {want!r}..."


def test_fuzz_replay_of_the_vectors_under_sanitizers(asan: Path, tmp_path: Path) -> None:
    """The fuzz harness's properties (no crash, canonical re-encoding is idempotent) hold on
    every vector frame, for every receiver role and state."""
    seeds = tmp_path / "seeds"
    subprocess.run(
        [sys.executable, str(SDK / "tests" / "make_seeds.py"), str(seeds)], check=True, timeout=120
    )
    files = sorted(seeds.iterdir())
    variants = []
    for path in files[:400]:  # each frame also under every other (role, state)
        data = path.read_bytes()
        for mode in range(0, 20, 3):
            variant = tmp_path / f"{path.name}-{mode}"
            variant.write_bytes(bytes([mode]) + data[1:])
            variants.append(variant)
    proc = subprocess.run(
        [str(asan / "fuzz_replay"), *map(str, files + variants)],
        capture_output=True,
        text=True,
        timeout=600,
        env=SAN_ENV,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-6000:]
    assert f"{len(files) + len(variants)} inputs replayed" in proc.stdout


def _libfuzzer_available() -> bool:
    clang = require_tool("clang")
    rt = subprocess.run(
        [clang, "-print-file-name=libclang_rt.fuzzer-x86_64.a"], capture_output=True, text=True
    )
    return Path(rt.stdout.strip()).is_file()


def test_libfuzzer_short_run(tmp_path: Path) -> None:
    """libFuzzer with ASan+UBSan over the decoder for a bounded time (FUZZ_SECONDS, default 20)."""
    if not _libfuzzer_available():
        message = "clang's libFuzzer runtime is missing (Debian: libclang-rt-<version>-dev)"
        if IN_CI:
            pytest.fail(f"CI: {message}")
        pytest.skip(message)
    seconds = os.environ.get("FUZZ_SECONDS", "20")
    make(tmp_path, "fuzz", extra=("CLANG=clang", f"FUZZ_SECONDS={seconds}"))
    crashes = [
        p.name for p in tmp_path.iterdir() if p.name.startswith(("crash-", "leak-", "timeout-", "oom-"))
    ]
    assert not crashes, f"libFuzzer findings in {tmp_path}: {crashes}"


def manual_example() -> str:
    """The example of rlay.h's top comment, as a program (it listens at $RLAY_ADDRESS)."""
    text = (SDK / "rlay.h").read_text()
    block = text.split("EXAMPLE", 1)[1].split("\n\n", 1)[1].split("\n\n   MODEL", 1)[0]
    code = "\n".join(line[7:] for line in block.splitlines())
    assert '"tcp://127.0.0.1:5555"' in code
    code = code.replace('"tcp://127.0.0.1:5555"', 'getenv("RLAY_ADDRESS")')
    return f'#define RLAY_IMPLEMENTATION\n#include "rlay.h"\n\nint main(void) {{\n{code}\n}}\n'


def test_the_manuals_example_compiles_and_serves_python(tmp_path: Path) -> None:
    require_tool("gcc")
    compile_tu(tmp_path, "gcc", ["-std=c99", "-Wall", "-Wextra", "-Werror"], {"example.c": manual_example()})
    env = rlay.ClientEnv(launch=[str(tmp_path / "a.out")])
    try:
        obs, _ = env.reset()
        assert obs.tolist() == [0.0]
        for _ in range(5):
            obs, reward, terminated, truncated, _ = env.step(1)
        assert obs.tolist() == [5.0] and reward == 1.0 and terminated and not truncated
        assert env.step(np.int64(0))[0].tolist() == [4.0]
    finally:
        env.close()


def test_space_vectors(plain: Path) -> None:
    """Descriptors validated and re-encoded canonically, values checked against their spaces."""
    failures = run_conformance([str(plain / "rlay_conformance")], lines=space_lines())
    assert not failures, "\n".join(failures[:30])


def test_space_vectors_under_sanitizers(asan: Path) -> None:
    failures = run_conformance([str(asan / "rlay_conformance")], lines=space_lines(), env=SAN_ENV, timeout=60)
    assert not failures, "\n".join(failures[:30])
