"""A numba intrinsic that turns a memory address into a pointer, for the cached callbacks.

The callbacks of :mod:`magbayes.compile_cache` read the cohort's arrays at run time from a
table of addresses and shapes that nutpie hands them (its ``user_data``). numba can store a
function that uses an intrinsic only when the intrinsic lives in an importable module, so it
lives here, on its own.
"""

from __future__ import annotations

from numba.core import cgutils, types
from numba.extending import intrinsic


@intrinsic
def address_as_pointer(typingctx, address):  # noqa: ARG001 (numba's signature)
    """``void*`` pointing at ``address`` (an integer), for ``numba.carray(ptr, shape, dtype)``."""
    signature = types.voidptr(address)

    def codegen(context, builder, sig, args):  # noqa: ARG001
        return builder.inttoptr(args[0], cgutils.voidptr_t)

    return signature, codegen
