"""The network: architectures, pretrained weights, checkpoints and model files, devices, cached features.
May import core.data (and core.errors, core.files); never train or use.
"""
