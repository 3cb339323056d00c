"""`jtile.autotune`: run the fastest of several configurations, chosen when JAX lowers the call.

`jtile.autotune(configs=[...], key=[...])` decorates a function; see `jtile.autotuning.tuner`.
"""

from jtile.autotuning.sweep import Choice
from jtile.autotuning.timing import Timer, default_timer
from jtile.autotuning.tuner import Autotuned, autotune

__all__ = ["autotune", "Autotuned", "Choice", "Timer", "default_timer"]
