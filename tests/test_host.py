"""host.py: the CPU device count the command line asks XLA for, and its compilation cache, before JAX starts."""

import os
import subprocess
import sys

import jax
import pytest

from instructgpt_jax import host

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from stage_inputs import ROOT, run_cli  # noqa: E402  the command line in a subprocess

FLAG = "--xla_force_host_platform_device_count"


@pytest.mark.parametrize("cores, expected", [(1, 1), (2, 2), (3, 2), (4, 4), (6, 4), (8, 8), (64, 8)])
def test_auto_is_cores_rounded_down_to_a_power_of_two_at_most_eight(cores, expected):
    assert host.auto_devices(cores) == expected


def test_flags_add_the_count_and_keep_the_users_other_flags():
    assert host.cpu_device_flags({}, 2) == f"{FLAG}=2"
    assert host.cpu_device_flags({"XLA_FLAGS": "--xla_dump_to=/tmp/d"}, 4) == f"--xla_dump_to=/tmp/d {FLAG}=4"
    assert host.cpu_device_flags({}, 1) is None  # one core: XLA's default, nothing to set


def test_a_count_already_in_xla_flags_wins_over_the_variable():
    assert host.cpu_device_flags({"XLA_FLAGS": f"{FLAG}=8", host.ENV: "2"}, 2) is None


def test_the_variable_sets_the_count_or_turns_it_off():
    assert host.cpu_device_flags({host.ENV: "4"}, 2) == f"{FLAG}=4"
    assert host.cpu_device_flags({host.ENV: "1"}, 16) is None
    assert host.cpu_device_flags({host.ENV: "auto"}, 16) == f"{FLAG}=8"


@pytest.mark.parametrize("value", ["two", "0", "-2", "1.5"])
def test_a_bad_value_is_an_error_naming_the_variable(value):
    with pytest.raises(ValueError, match=rf"{host.ENV}='{value}': expected 'auto' or a positive number"):
        host.cpu_device_flags({host.ENV: value}, 2)


def test_nothing_changes_once_jax_is_imported():
    assert jax.__name__ in sys.modules  # imported at the top of this file, as a notebook would
    environ = {host.ENV: "4"}
    assert host.split_cpu_cores(environ) is False and environ == {host.ENV: "4"}


def _run(code: str, **env) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", host.ENV)}
    return subprocess.run([sys.executable, "-c", code], env={**clean, **env}, capture_output=True, text=True,
                          timeout=120)


def test_the_command_line_gives_jax_the_devices_before_it_starts():
    code = "import instructgpt_jax.cli, jax; print(jax.device_count(), jax.default_backend())"
    out = _run(code, **{host.ENV: "2", "JAX_PLATFORMS": "cpu"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[-2:] == ["2", "cpu"]
    out = _run(code, **{host.ENV: "1", "JAX_PLATFORMS": "cpu"})
    assert out.stdout.split()[-2:] == ["1", "cpu"]


@pytest.mark.parametrize("script", ["sweep", "skill_probe", "rm_probe", "sampling_spread"])
def test_scripts_that_run_stages_give_jax_the_devices_the_command_line_does(script):
    """experiments/sweep.py runs its stages in its own process: with XLA's one default device they would
    differ from `instructgpt pipeline`'s in rounding (and run slower)."""
    code = (f"import sys; sys.path.insert(0, {os.path.join(ROOT, 'experiments')!r}); import {script}, jax; "
            "print(jax.device_count())")
    out = _run(code, **{host.ENV: "2", "JAX_PLATFORMS": "cpu"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[-1] == "2"


def test_the_command_line_stops_with_one_line_on_a_bad_value():
    out = _run("import instructgpt_jax.cli", **{host.ENV: "many", "JAX_PLATFORMS": "cpu"})
    assert out.returncode == 1
    expected = f"instructgpt: error: {host.ENV}='many': expected 'auto' or a positive number of CPU devices"
    assert out.stderr.strip() == expected


def test_the_compile_cache_folder_defaults_under_the_users_cache_and_follows_the_variable(tmp_path):
    assert host.compile_cache_dir({"XDG_CACHE_HOME": "/c"}, "sft") == "/c/instructgpt_jax/xla"
    home = os.path.expanduser("~")
    assert host.compile_cache_dir({}, "pipeline") == os.path.join(home, ".cache", "instructgpt_jax", "xla")
    assert host.compile_cache_dir({host.CACHE_ENV: str(tmp_path)}, "sft") == str(tmp_path)
    assert host.compile_cache_dir({host.CACHE_ENV: "~/x"}, "sft") == os.path.join(home, "x")


def test_no_compile_cache_when_off_for_the_bench_or_when_jax_has_its_own():
    assert host.compile_cache_dir({host.CACHE_ENV: "off"}, "sft") is None
    assert host.compile_cache_dir({}, "bench") is None  # the bench measures compile time
    assert host.compile_cache_dir({host.JAX_CACHE_ENV: "/mine", host.CACHE_ENV: "/ours"}, "sft") is None


def test_use_compile_cache_sets_jax_variables_only_before_jax_starts(monkeypatch, tmp_path):
    environ = {"XDG_CACHE_HOME": str(tmp_path)}
    assert host.use_compile_cache("sft", environ) is None  # jax is imported in this process: nothing changes
    assert environ == {"XDG_CACHE_HOME": str(tmp_path)}
    monkeypatch.delitem(sys.modules, "jax")
    folder = str(tmp_path / "instructgpt_jax" / "xla")
    assert host.use_compile_cache("sft", environ) == folder and os.path.isdir(folder)
    assert environ[host.JAX_CACHE_ENV] == folder
    assert environ["JAX_COMPILATION_CACHE_MAX_SIZE"] == str(host.CACHE_MAX_BYTES)
    assert environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] == "0"
    environ = {"JAX_COMPILATION_CACHE_MAX_SIZE": "123"}
    host.use_compile_cache("sft", environ)
    assert environ["JAX_COMPILATION_CACHE_MAX_SIZE"] == "123"  # the user's cap stays


def test_a_folder_that_cannot_be_made_turns_the_cache_off_with_one_line(monkeypatch, tmp_path, capsys):
    monkeypatch.delitem(sys.modules, "jax")
    (tmp_path / "file").write_text("")
    environ = {host.CACHE_ENV: str(tmp_path / "file" / "xla")}  # under a file: no folder can be made there
    assert host.use_compile_cache("sft", environ) is None
    assert host.JAX_CACHE_ENV not in environ
    err = capsys.readouterr().err
    assert err == (f"instructgpt: compilation cache off: cannot create {tmp_path}/file/xla (Not a directory); "
                   f"set {host.CACHE_ENV}=DIR or {host.CACHE_ENV}=off\n")


def test_a_second_run_of_a_command_loads_its_programs_from_the_cache(tmp_path):
    """The command line's cache end to end: the first run of a one-step pretraining compiles and writes its
    programs to INSTRUCTGPT_COMPILE_CACHE's folder, the second (another workdir) loads them from there."""
    # conftest's cache variables out: the command line sets its own
    env = {k: v for k, v in os.environ.items() if k != host.JAX_CACHE_ENV and not k.startswith("JAX_PERSISTENT_CACHE")}
    env |= {host.CACHE_ENV: str(tmp_path / "cache"), "JAX_DEBUG_LOG_MODULES": "jax._src.compiler"}

    def pretrain(workdir):
        out = run_cli("pretrain", "--config", "configs/pretrain.py:smoke", "--config.train.steps=1",
                      "--workdir", str(workdir), timeout=300, environ=env)
        assert out.returncode == 0, out.stderr[-3000:]
        return out.stderr

    first = pretrain(tmp_path / "a")
    assert "Persistent compilation cache hit" not in first
    assert any((tmp_path / "cache").iterdir())
    second = pretrain(tmp_path / "b")
    assert "Persistent compilation cache hit" in second
    assert "Persistent compilation cache miss" not in second  # every program of the first run, none recompiled
