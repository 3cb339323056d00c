"""Reading what the CUDA compiler prints: ptxas resource reports and error diagnostics.

Both NVRTC and nvcc run ptxas with ``-v``, whose report gives each kernel's registers, spills
and static shared memory with no GPU present; and both print front-end errors as
``file.cu(123): error: ...``. This module turns those logs into numbers and into error messages
that show the offending generated source.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from jtile.errors import JtileCompileError

_ENTRY = re.compile(r"Compiling entry function '([^']+)' for '(\w+)'")
_REGISTERS = re.compile(r"Used (\d+) registers")
_SMEM = re.compile(r"(\d+) bytes smem")
_SPILLS = re.compile(r"(\d+) bytes spill stores, (\d+) bytes spill loads")
_DIAGNOSTIC = re.compile(
    r"^(?P<file>[^\n()]+)\((?P<line>\d+)\): (?P<kind>error|warning|catastrophic error)",
    re.MULTILINE,
)
_CONTEXT_LINES = 2
_MAX_SNIPPETS = 8


@dataclass(frozen=True)
class KernelResources:
    """What ptxas reported for one entry function.

    Attributes:
        name: The entry's symbol name as ptxas printed it (mangled unless ``extern "C"``).
        registers: 32-bit registers per thread.
        spill_bytes: Bytes of spill stores plus spill loads to local memory; non-zero usually
            means the tile sizes ask for more registers than the 255 a thread may have.
        static_shared_memory_bytes: Bytes of ``__shared__`` declared statically (dynamic shared
            memory is set at launch and does not appear here).
    """

    name: str
    registers: int
    spill_bytes: int
    static_shared_memory_bytes: int


def parse_ptxas_report(log: str) -> dict[str, KernelResources]:
    """Parses a ``ptxas -v`` report into resources per entry function.

    Args:
        log: The compiler's log, which may hold other messages around the report.

    Returns:
        A mapping from each entry function's symbol name to its resources.
    """
    entries: dict[str, dict[str, int]] = {}
    current: dict[str, int] | None = None
    for line in log.splitlines():
        entry = _ENTRY.search(line)
        if entry:
            current = entries.setdefault(
                entry.group(1), {"registers": 0, "spill": 0, "smem": 0}
            )
            continue
        if current is None:
            continue
        if spills := _SPILLS.search(line):
            current["spill"] = int(spills.group(1)) + int(spills.group(2))
        if registers := _REGISTERS.search(line):
            current["registers"] = int(registers.group(1))
            if smem := _SMEM.search(line):
                current["smem"] = int(smem.group(1))
    return {
        name: KernelResources(
            name, fields["registers"], fields["spill"], fields["smem"]
        )
        for name, fields in entries.items()
    }


def find_kernel(
    report: dict[str, KernelResources], kernel_name: str, log: str
) -> KernelResources:
    """Picks the named kernel out of a ptxas report.

    Args:
        report: The result of ``parse_ptxas_report``.
        kernel_name: The kernel's source name; an ``extern "C"`` kernel appears as is, a C++ one
            mangled (``_Z<length><name>...``).
        log: The whole log, quoted in the error.

    Raises:
        JtileCompileError: If the module has no such entry function, which would otherwise
            surface only at launch as ``CUDA_ERROR_NOT_FOUND``.
    """
    if kernel_name in report:
        return report[kernel_name]
    mangled_prefix = f"_Z{len(kernel_name)}{kernel_name}"
    for name, resources in report.items():
        if name.startswith(mangled_prefix):
            return resources
    found = ", ".join(sorted(report)) or "none"
    raise JtileCompileError(
        f"{kernel_name}: the compiled module has no entry function named {kernel_name!r} "
        f'(entries: {found}); declare it extern "C" __global__.\ncompiler log:\n{log}'
    )


# ptxas's fatal error when one instruction (a wide wgmma) needs more registers than the cap.
_OUT_OF_REGISTERS = "Insufficient registers"


def compile_error(
    kernel_name: str, compiler: str, source: str, source_name: str, log: str
) -> JtileCompileError:
    """Builds the error for a failed compile, quoting the source around each error line.

    Args:
        kernel_name: The kernel being compiled, named first in the message.
        compiler: The compiler and its version, e.g. ``"nvrtc 13.5"``.
        source: The CUDA source that was compiled.
        source_name: The file name the compiler was told, e.g. ``"add.cu"``; errors in other
            files (headers) are quoted from disk when readable.
        log: The compiler's log.

    Returns:
        The exception to raise.
    """
    source_lines = source.splitlines()
    snippets = []
    seen = set()
    for match in _DIAGNOSTIC.finditer(log):
        if match.group("kind") == "warning":
            continue
        file, line = match.group("file").strip(), int(match.group("line"))
        if (file, line) in seen:
            continue
        seen.add((file, line))
        if os.path.basename(file) == source_name:
            lines = source_lines
        else:
            lines = _read_lines(file)
        if lines:
            snippets.append(_snippet(file, lines, line))
        if len(snippets) == _MAX_SNIPPETS:
            break
    message = f"{kernel_name}: {compiler} failed to compile the generated CUDA.\ncompiler log:\n{log.rstrip()}"
    if _OUT_OF_REGISTERS in log:
        message += ("\n\nptxas held this instruction to the block's share of the register file "
                    "(65536 / threads, at most 255), the figure in its message, even under "
                    "setmaxnreg. Use fewer threads per block or a smaller tile (a smaller "
                    "accumulator per warpgroup).")
    if snippets:
        message += "\n\nsource around the errors:\n" + "\n\n".join(snippets)
    return JtileCompileError(message)


def _read_lines(path: str) -> list[str]:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read().splitlines()
    except OSError:
        return []


def _snippet(file: str, lines: list[str], line: int) -> str:
    first = max(1, line - _CONTEXT_LINES)
    last = min(len(lines), line + _CONTEXT_LINES)
    width = len(str(last))
    out = [f"{os.path.basename(file)}:{line}:"]
    for number in range(first, last + 1):
        marker = ">" if number == line else " "
        out.append(f"{marker} {number:>{width}} | {lines[number - 1]}")
    return "\n".join(out)
