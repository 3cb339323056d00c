"""SIMT-style kernels: per-thread code (statements that read `T.get_thread_binding()`) keeping
per-thread values in thread-private buffers (`T.alloc_local`, `T.alloc_var`), exchanging them
through shared memory between `T.sync_threads()`, as TileLang's gemv and hadamard examples do.
Each comes with a numpy reference. Used by the interpret-mode and compile tests (CPU) and the
GPU suite (compiled against numpy)."""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

import jtile.language as T

S = jax.ShapeDtypeStruct


def gemv_tree(A, x, y, *, block_n=8, threads_k=16, tile_k=4):
    """y = A @ x: thread (tn, tk) accumulates a slice of row tn in a local register, copied in
    per thread from a thread-dependent address; the threads of a row then add their partial
    sums in a shared-memory tree, halving the active threads between barriers."""
    N, K = A.shape
    with T.Kernel(T.ceildiv(N, block_n), threads=(block_n, threads_k)) as bn:
        tn = T.get_thread_binding(0)
        tk = T.get_thread_binding(1)
        a_local = T.alloc_local((tile_k,), A.dtype)
        acc = T.alloc_local((1,), "float32")
        partial = T.alloc_shared((threads_k, block_n), "float32")
        T.clear(acc)
        for bk in T.serial(K // (threads_k * tile_k)):
            k0 = bk * threads_k * tile_k + tk * tile_k
            T.copy(A[bn * block_n + tn, k0:k0 + tile_k], a_local)
            for k in T.serial(tile_k):
                acc[0] += a_local[k].astype("float32") * x[k0 + k].astype("float32")
        partial[tk, tn] = acc[0]
        T.sync_threads()
        stride = threads_k // 2
        while stride > 0:
            if tk < stride:
                partial[tk, tn] += partial[tk + stride, tn]
            T.sync_threads()
            stride //= 2
        if tk == 0:
            y[bn * block_n + tn] = partial[0, tn]


def gemv_tree_reference(a, x):
    return a.astype(np.float64) @ x.astype(np.float64)


def row_prefix(X, L, Y, C, *, threads=32):
    """Thread t owns row t of its block: a running sum in a T.alloc_var over the first L[row]
    elements (a loop bound that differs between threads), zeros after them, and a counter of
    the positive elements that starts from the thread index. Rows past the end are skipped."""
    M, N = X.shape
    with T.Kernel(T.ceildiv(M, threads), threads=threads) as bx:
        tx = T.get_thread_binding()
        row = bx * threads + tx
        running = T.alloc_var("float32")
        count = T.alloc_var("int32", tx % 3)
        if row < M:
            running = 0.0
            for j in T.serial(N):
                Y[row, j] = 0.0
            for j in T.serial(L[row]):
                running = running + X[row, j]
                Y[row, j] = running
                if X[row, j] > 0:
                    count = count + 1
            C[row] = count


def row_prefix_reference(x, lengths, *, threads=32):
    M, N = x.shape
    y = np.zeros((M, N))
    c = np.zeros(M, np.int64)
    for r in range(M):
        n = int(lengths[r])
        y[r, :n] = np.cumsum(x[r, :n].astype(np.float64))
        c[r] = (r % threads) % 3 + int(np.sum(x[r, :n] > 0))
    return y, c


def center_rows(X, Y, *, block_m=16, threads=64):
    """Tile operations around per-thread code: T.copy brings a tile to shared memory, the first
    block_m threads each sum one row in a local accumulator and publish its mean, and a
    T.Parallel loop centers and scales the tile by a block-wide local before T.copy stores it."""
    M, N = X.shape
    with T.Kernel(M // block_m, threads=threads) as bx:
        tx = T.get_thread_binding()
        tile = T.alloc_shared((block_m, N), "float32")
        means = T.alloc_shared((block_m,), "float32")
        acc = T.alloc_local((1,), "float32")
        scale = T.alloc_local((1,), "float32")
        scale[0] = 0.5
        T.copy(X[bx * block_m, 0], tile)
        if tx < block_m:
            acc[0] = 0.0
            for j in T.serial(N):
                acc[0] += tile[tx, j]
            means[tx] = acc[0] / N
        T.sync_threads()
        for i, j in T.Parallel(block_m, N):
            tile[i, j] = (tile[i, j] - means[i]) * scale[0]
        T.copy(tile, Y[bx * block_m, 0])


def center_rows_reference(x):
    x = x.astype(np.float64)
    return (x - x.mean(axis=1, keepdims=True)) * 0.5


def hadamard(A, B, *, threads=16, elems=4):
    """An unnormalised Walsh-Hadamard transform of each row, n = threads * elems: butterflies
    inside each thread's local registers for the low bits of the index, then one exchange
    through shared memory per high bit, with the sign chosen by the thread's own bit."""
    rows, n = A.shape
    with T.Kernel(rows, threads=threads) as bx:
        tx = T.get_thread_binding()
        local = T.alloc_local((elems,), "float32")
        other = T.alloc_local((elems,), "float32")
        exchange = T.alloc_shared((n,), "float32")
        for i in T.serial(elems):
            local[i] = A[bx, tx * elems + i]
        for bit in range(int(math.log2(elems))):
            half = 1 << bit
            for j in T.serial(elems // 2):
                lo = (j // half) * 2 * half + j % half
                other[0] = local[lo]
                local[lo] = other[0] + local[lo + half]
                local[lo + half] = other[0] - local[lo + half]
        for bit in range(int(math.log2(threads))):
            for i in T.serial(elems):
                exchange[tx * elems + i] = local[i]
            T.sync_threads()
            for i in T.serial(elems):
                other[i] = exchange[(tx ^ (1 << bit)) * elems + i]
                local[i] = T.if_then_else((tx >> bit) & 1 == 0, local[i] + other[i],
                                          other[i] - local[i])
            T.sync_threads()
        for i in T.serial(elems):
            B[bx, tx * elems + i] = local[i]


def hadamard_reference(a):
    n = a.shape[1]
    h = np.array([[1.0]])
    while h.shape[0] < n:
        h = np.block([[h, h], [h, -h]])
    return a.astype(np.float64) @ h.T


def tiled_row_sums(X, Y, *, block_m=16, block_k=32, threads=64):
    """A serial loop holding a block-wide T.copy into shared memory and per-thread work: the
    first block_m threads each add one row of every tile into a local accumulator."""
    M, K = X.shape
    with T.Kernel(M // block_m, threads=threads) as bx:
        tx = T.get_thread_binding()
        tile = T.alloc_shared((block_m, block_k), "float32")
        acc = T.alloc_local((1,), "float32")
        T.clear(acc)
        for k in T.serial(K // block_k):
            T.copy(X[bx * block_m, k * block_k], tile)
            if tx < block_m:
                for j in T.serial(block_k):
                    acc[0] += tile[tx, j] * tile[tx, j]
            T.sync_threads()
        if tx < block_m:
            Y[bx * block_m + tx] = acc[0]


def tiled_row_sums_reference(x):
    return np.sum(x.astype(np.float64) ** 2, axis=1)


def private_tiles(X, O, Total, *, threads=32, width=4):
    """T.fill and T.copy of a local tile in per-thread code: even threads fill theirs with the
    thread index, odd ones copy theirs in from a thread-dependent address; every thread copies
    its tile out and adds one element into a shared total with T.atomic_add."""
    with T.Kernel(X.shape[0] // (threads * width), threads=threads) as bx:
        tx = T.get_thread_binding()
        start = bx * threads * width + tx * width
        mine = T.alloc_local((width,), "float32")
        total = T.alloc_shared((1,), "float32")
        if tx % 2 == 0:
            T.fill(mine, tx * 1.0)
        else:
            T.copy(X[start:start + width], mine)
        T.copy(mine, O[start:start + width])
        if tx == 0:
            total[0] = 0.0
        T.sync_threads()
        T.atomic_add(total[0], mine[1])
        T.sync_threads()
        if tx == 0:
            Total[bx] = total[0]


def private_tiles_reference(x, *, threads=32, width=4):
    tiles = x.astype(np.float64).reshape(-1, threads, width).copy()
    tiles[:, ::2, :] = np.arange(0, threads, 2)[None, :, None]
    return tiles.reshape(-1), tiles[:, :, 1].sum(axis=1)


def collatz_steps(X, O, *, threads=32):
    """A while loop per thread: its condition reads a per-thread variable, so threads leave it
    after different numbers of trips; a second variable counts the trips."""
    (n,) = X.shape
    with T.Kernel(T.ceildiv(n, threads), threads=threads) as bx:
        i = bx * threads + T.get_thread_binding()
        value = T.alloc_var("int32")
        steps = T.alloc_var("int32", 0)
        if i < n:
            value = X[i]
            while value > 1:
                if value % 2 == 0:
                    value = value // 2
                else:
                    value = 3 * value + 1
                steps = steps + 1
            O[i] = steps


def collatz_steps_reference(x):
    out = []
    for v in x.tolist():
        steps = 0
        while v > 1:
            v = v // 2 if v % 2 == 0 else 3 * v + 1
            steps += 1
        out.append(steps)
    return np.array(out)


# name -> (kernel, input specs, output specs, reference(*numpy inputs) -> outputs)
CASES = {
    "gemv_tree": (gemv_tree, [S((40, 128), jnp.float32), S((128,), jnp.float32)],
                  S((40,), jnp.float32), gemv_tree_reference),
    "gemv_tree_half": (functools.partial(gemv_tree, block_n=4, threads_k=32, tile_k=8),
                       [S((16, 512), jnp.float16), S((512,), jnp.float16)],
                       S((16,), jnp.float32), gemv_tree_reference),
    "row_prefix": (row_prefix, [S((70, 24), jnp.float32), S((70,), jnp.int32)],
                   (S((70, 24), jnp.float32), S((70,), jnp.int32)), row_prefix_reference),
    "center_rows": (center_rows, [S((48, 32), jnp.float32)], S((48, 32), jnp.float32),
                    center_rows_reference),
    "hadamard": (hadamard, [S((3, 64), jnp.float32)], S((3, 64), jnp.float32),
                 hadamard_reference),
    "tiled_row_sums": (tiled_row_sums, [S((32, 96), jnp.float32)], S((32,), jnp.float32),
                       tiled_row_sums_reference),
    "private_tiles": (private_tiles, [S((256,), jnp.float32)],
                      (S((256,), jnp.float32), S((2,), jnp.float32)), private_tiles_reference),
    "collatz_steps": (collatz_steps, [S((70,), jnp.int32)], S((70,), jnp.int32),
                      collatz_steps_reference),
}


def random_inputs(name: str, seed: int) -> list:
    """Seeded inputs for case `name`: normal floats; integers are row lengths in [0, N] for
    row_prefix and starting values in [1, 100) for collatz_steps."""
    rng = np.random.default_rng(seed)
    specs = CASES[name][1]
    out = []
    for spec in specs:
        if not jnp.issubdtype(spec.dtype, jnp.integer):
            out.append(rng.standard_normal(spec.shape).astype(spec.dtype))
        elif name == "row_prefix":
            out.append(rng.integers(0, specs[0].shape[1] + 1, size=spec.shape).astype(spec.dtype))
        else:
            out.append(rng.integers(1, 100, size=spec.shape).astype(spec.dtype))
    return out


def launcher(name: str, interpret: bool):
    import jtile

    kernel, _, out, _ = CASES[name]
    return jtile.pallas_like(kernel, out_shape=out, name=name, interpret=interpret)
