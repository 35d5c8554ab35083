"""coremltools state that outlives one conversion, reset before each.

coremltools names ops from per-prefix counters (``Builder.name_count``: ``const_0``,
``const_1`` …) and flexible-dimension symbols from a counter in ``mil/program.py``. It resets
them only after a conversion that succeeded (and resets a copy of the symbol counter), so
anything else that built MIL in the worker first (a compression step, a conversion that
failed) shifted the names, and with them the bytes of ``model.mlmodel`` and
``Manifest.json``. Measured on the gpt example: converted after mobilenet's compressed
variants in one worker, its constants were named ``const_1`` … instead of ``const_0`` ….
"""

from __future__ import annotations


def fresh_conversion_state() -> None:
    from coremltools.converters.mil import Builder
    from coremltools.converters.mil.mil import program
    from coremltools.converters.mil.mil.types import symbolic

    program.k_num_internal_syms = 0
    symbolic.k_num_internal_syms = 0
    program.k_used_symbols.clear()  # the dict symbolic.py holds too
    symbolic.k_used_symbols.clear()
    Builder.name_count.clear()
