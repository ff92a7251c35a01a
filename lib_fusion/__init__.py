"""sd-webui-model-fusion: fuse a second checkpoint with the active one while the WebUI samples.

The package is plain PyTorch except :mod:`lib_fusion.host`, the one module that touches
the WebUI's internals (``modules.*``).
"""

__version__ = "0.1.0"
