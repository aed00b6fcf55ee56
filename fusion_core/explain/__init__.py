"""Layer 3, explanations: the engine (attention, relevance, exact Shapley), targets, the
contribution-method registry, per-weld summaries, comparison and sanity checks.

This package shares its name with the public function `fusion_core.explain`. Python sets
`fusion_core.explain` to this package whenever one of its modules is imported, so the
package is made callable: `fusion_core.explain(model, inputs, ...)` is
`fusion_core.explain.engine.explain(...)` whichever of the two the name holds.
"""

import sys
import types


class _CallablePackage(types.ModuleType):
    def __call__(self, *args, **kwargs):
        from .engine import explain
        return explain(*args, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage
