"""Test setup: 8 fake CPU devices, set before jax is imported anywhere."""
import atexit
import os
import shutil
import tempfile

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# One compilation cache for the session, shared with the command lines the tests start: a resumed run or a
# second CLI call loads what an earlier test compiled (docs/RESULTS.md, "A compilation cache for the command
# line": what it saves). A fresh folder each session, so no run depends on an earlier session's programs.
if not os.environ.get("JAX_COMPILATION_CACHE_DIR"):
    _cache = tempfile.mkdtemp(prefix="instructgpt-tests-xla-")
    atexit.register(shutil.rmtree, _cache, ignore_errors=True)
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _cache
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")

import jax  # noqa: E402

jax.config.update("jax_threefry_partitionable", True)
