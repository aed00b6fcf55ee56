"""Upstream's four encoders (bluuueheart/Weld-Anomaly-Detection's QuadModalSOTAModel), rebuilt from a
checkpoint's own weights: `preprocess` (its dataset code's inputs), `backbones` (V-JEPA 2, DINOv3 /
DINOv2, AST as `transformers` models; transformers is imported lazily there), `sensor` (its sensor
Transformer), `adapters` (one interface: Weld → tokens + positions), `encoders` (lazy loading,
device, cache, progress)."""
