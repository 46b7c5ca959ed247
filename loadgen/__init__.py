"""Load generator and benchmarks for the dispatcher.

It ships with the package; what it needs beyond the product comes with the ``loadgen``
extra (``pip install 'agent-dispatcher[loadgen]'``), which is checked here so that a
missing one is one clear error rather than a failed import deep inside a run.
"""

from importlib.util import find_spec

#: Modules of the ``loadgen`` extra's distributions (pyproject.toml).
EXTRA_MODULES = ("hdrh",)

_missing = [name for name in EXTRA_MODULES if find_spec(name) is None]
if _missing:
    raise ImportError(
        f"loadgen needs the loadgen extra ({', '.join(_missing)} missing): "
        "pip install 'agent-dispatcher[loadgen]'"
    )
