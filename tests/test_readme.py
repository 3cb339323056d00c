"""README.md stays true: its two commands come first, and its tour runs.

The tour's python blocks run in order, in one namespace, in a fresh process in interpret mode
on the CPU with two host devices (so the shard_map block shards), and their results are then
compared with NumPy. A block whose first line is `# needs a CUDA GPU` is only compiled here,
not run; the GPU machine runs the examples themselves."""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys

from jtile import config

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"
NEEDS_GPU = "# needs a CUDA GPU"

RUN_COMMAND = "python3 -m pip install -e . && python3 examples/quickstart.py"
TEST_COMMAND = ("npm install --no-save --prefix .tools @bazel/buildifier && "
                "python3 -m pip install -e '.[test]' && python3 -m pytest -q -n 2")


def _fenced_blocks(language: str) -> list[tuple[int, str]]:
    """`(first line number of the code, code)` of each ```language block, in order."""
    text = README.read_text()
    return [(text.count("\n", 0, m.start(1)) + 1, m.group(1))
            for m in re.finditer(rf"^```{language}\n(.*?)^```", text, re.M | re.S)]


def _python_blocks() -> list[tuple[int, str]]:
    return _fenced_blocks("python")


# Runs the README's blocks (passed as a list of (line, code) pairs in argv[1], a Python literal)
# so that a traceback points at README.md's own lines, then checks what they computed.
RUNNER = r'''
import ast, sys

blocks = ast.literal_eval(open(sys.argv[1]).read())
namespace = {"__name__": "__readme__"}
for line, code in blocks:
    exec(compile("\n" * (line - 1) + code, "README.md", "exec"), namespace)

import numpy as np
from numpy.testing import assert_allclose

g = namespace
x, y = np.asarray(g["x"], np.float64), np.asarray(g["y"], np.float64)
assert_allclose(np.asarray(g["z"]), x + y, rtol=1e-6, atol=1e-6)
a, b = np.asarray(g["a"], np.float32), np.asarray(g["b"], np.float32)
assert_allclose(np.asarray(g["c"], np.float32), a @ b, rtol=2e-2, atol=6e-2)
assert_allclose(np.asarray(g["c_tuned"], np.float32), a @ b, rtol=2e-2, atol=6e-2)
assert_allclose(np.asarray(g["dx"]), y, rtol=1e-6, atol=1e-6)
assert_allclose(np.asarray(g["dy"]), x, rtol=1e-6, atol=1e-6)
assert_allclose(np.asarray(g["zs"]), np.stack([x + y, y + x, x + x]), rtol=1e-6, atol=1e-6)
assert_allclose(np.asarray(g["zs_sharded"]), x + y, rtol=1e-6, atol=1e-6)
assert len(g["zs_sharded"].sharding.device_set) == 2
assert_allclose(np.asarray(g["z_restored"]), x + y, rtol=1e-6, atol=1e-6)
assert_allclose(np.asarray(g["z_interpreted"]), x + y, rtol=1e-6, atol=1e-6)
# jtile.ops: the loss of rms_norm then linear cross-entropy, and its gradients, against jnp.
import jax
import jax.numpy as jnp
h, w_vocab, labels = g["h"], g["w_vocab"], g["labels"]
def jnp_loss(h, w):
    normed = h * jax.lax.rsqrt(jnp.mean(h * h, axis=-1, keepdims=True) + 1e-6)
    logits = normed @ w
    picked = jnp.take_along_axis(logits, labels[:, None], axis=-1)[:, 0]
    return jnp.mean(jax.nn.logsumexp(logits, axis=-1) - picked)
want_loss, (want_dh, want_dw) = jax.value_and_grad(jnp_loss, argnums=(0, 1))(h, w_vocab)
assert_allclose(float(g["ce_loss"]), float(want_loss), rtol=1e-5, atol=1e-5)
assert_allclose(np.asarray(g["dh"]), np.asarray(want_dh), rtol=1e-4, atol=1e-5)
assert_allclose(np.asarray(g["dw"]), np.asarray(want_dw), rtol=1e-4, atol=1e-5)
# The tour says the sm_90a GEMM uses TMA and wgmma, and hands out a cubin.
source = g["lowered"].cuda_source()
assert "wgmma" in source and "tma" in source.lower(), "the sm_90a GEMM lost its Hopper path"
assert g["cubin"][:4] == b"\x7fELF"
print("README tour ran:", len(blocks), "blocks")
'''


def test_the_two_commands_come_first():
    text = README.read_text()
    first_fence = text.index("```")
    assert text.index("```bash") == first_fence, "the README's first code block is not bash"
    commands = [code.strip() for _, code in _fenced_blocks("bash")[:2]]
    assert commands == [RUN_COMMAND, TEST_COMMAND]
    # Nothing but prose comes before them.
    assert text.index(RUN_COMMAND) < text.index(TEST_COMMAND) < text.index("```python")


def test_the_tour_runs_in_interpret_mode(tmp_path):
    blocks = _python_blocks()
    runnable = [(line, code) for line, code in blocks if not code.startswith(NEEDS_GPU)]
    for line, code in blocks:
        if code.startswith(NEEDS_GPU):  # not run here, but it must at least be Python
            compile("\n" * (line - 1) + code, "README.md", "exec")
    assert len(runnable) >= 8, "the tour lost its snippets"
    listing = tmp_path / "blocks.txt"
    listing.write_text(repr(runnable))
    env = dict(os.environ,
               JTILE_INTERPRET="1", JAX_PLATFORMS="cpu",
               XLA_FLAGS="--xla_force_host_platform_device_count=2",
               JTILE_CACHE_DIR=str(tmp_path / "cache"))
    result = subprocess.run([sys.executable, "-c", RUNNER, str(listing)], env=env,
                            capture_output=True, text=True, timeout=900,
                            cwd=str(README.parent))
    assert result.returncode == 0, result.stderr[-6000:]
    assert f"README tour ran: {len(runnable)} blocks" in result.stdout


def test_every_jtile_variable_the_readme_names_exists():
    named = set(re.findall(r"\bJTILE_[A-Z_]+\b", README.read_text()))
    declared = {variable.name for variable in config.VARIABLES}
    assert named, "the README names no JTILE_* variable"
    assert named <= declared, f"not declared in jtile/config.py: {sorted(named - declared)}"
