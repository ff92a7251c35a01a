import contextlib

import torch

cpu = torch.device("cpu")
device = torch.device("cpu")
"""Where the models live, as with ``--use-cpu all``; the benchmarks may set a GPU
(``bench/standin.py``), and the stand-in then keeps models, noise and sigmas there."""
dtype = torch.float32
dtype_unet = torch.float32
"""float32 as with ``--no-half``; the benchmarks set float16 on a GPU, as the WebUI runs."""


def autocast(disable=False):
    return contextlib.nullcontext()


def torch_gc():
    pass


def without_autocast(disable=False):
    return contextlib.nullcontext()
