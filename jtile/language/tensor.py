"""`T.Tensor` annotations on kernel parameters: the shapes and dtypes a kernel expects."""

from __future__ import annotations

from dataclasses import dataclass

from jtile.ir.types import DType, as_dtype


@dataclass(frozen=True)
class TensorAnnotation:
    """`A: T.Tensor((M, K), "float16")`; a None dimension matches any size."""

    shape: tuple
    dtype: DType

    def describe(self) -> str:
        dims = ", ".join("?" if d is None else str(d) for d in self.shape)
        return f"T.Tensor(({dims}{',' if len(self.shape) == 1 else ''}), {self.dtype})"

    def mismatch(self, shape: tuple, dtype: DType):
        """A sentence saying how (shape, dtype) differs from the annotation, or None."""
        if len(shape) != len(self.shape) or any(
                want is not None and want != got for want, got in zip(self.shape, shape)):
            return f"has shape {tuple(shape)} but is annotated {self.describe()}"
        if dtype is not self.dtype:
            return f"has dtype {dtype} but is annotated {self.describe()}"
        return None


def Tensor(shape, dtype="float32"):
    """Annotates a kernel parameter with its expected shape and dtype."""
    shape = shape if isinstance(shape, (tuple, list)) else (shape,)
    return TensorAnnotation(tuple(None if d is None else int(d) for d in shape), as_dtype(dtype))


Buffer = Tensor
