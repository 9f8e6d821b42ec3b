"""ResNet App: classify images and train ResNet18 on folders of images."""

__version__ = "0.1.0"
