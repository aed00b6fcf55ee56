"""Layer 3, explanations: the engine (attention, relevance, exact Shapley), targets, the
contribution-method registry, per-weld summaries, comparison and sanity checks."""
