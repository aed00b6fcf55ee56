"""Layer 1, reading: files in, plain data out (tensors, arrays, `Weld`s). No model code.

    torchload   weights-only torch.load (leaf)        limits      what a read may take
    layout      the weld-folder rules and digest      decode      bytes → video/audio/photo/CSV arrays
    containers  folders, zips, uploads → `Weld`s      weld        the `Weld` type
    features    feature files → `FeatureBatch`        checkpoint  checkpoint files → tensors + metadata
"""
