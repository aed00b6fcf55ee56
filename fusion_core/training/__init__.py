"""Layer 4, making data and models: synthetic welds, training the demo model, `make sample-data`."""
