"""TileLang's `make_mma_swizzle_layout`: the XOR swizzle of a shared tile read by ldmatrix,
which its kernels pass to `T.annotate_layout`.

A swizzle moves where elements live in shared memory, never their values, and jtile swizzles
the shared tiles its tensor-core instructions read by itself; the layout returned here asks for
jtile's own swizzle of the tile (`T.make_swizzled_layout`). As in TileLang, `is_smooth=True`,
or rows that are not a multiple of 64 bytes, give the plain row-major layout.
"""

from jtile import language


def make_mma_swizzle_layout(shared_buf, is_smooth: bool = False):
    row_bits = shared_buf.shape[-1] * shared_buf.dtype.bits
    if is_smooth or row_bits % 512:
        return language.make_linear_layout(shared_buf)
    return language.make_swizzled_layout(shared_buf)
