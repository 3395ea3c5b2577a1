"""host.py: the CPU device count the command line asks XLA for, before JAX starts."""

import os
import subprocess
import sys

import jax
import pytest

from instructgpt_jax import host

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


def test_the_command_line_stops_with_one_line_on_a_bad_value():
    out = _run("import instructgpt_jax.cli", **{host.ENV: "many", "JAX_PLATFORMS": "cpu"})
    assert out.returncode == 1
    expected = f"instructgpt: error: {host.ENV}='many': expected 'auto' or a positive number of CPU devices"
    assert out.stderr.strip() == expected
