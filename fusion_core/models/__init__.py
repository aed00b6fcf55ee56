"""Layer 2, models: the fusion module (and THE attention forward), the mean-pool dummy, the
encoders, and building them from checkpoint tensors."""
