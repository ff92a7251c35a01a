"""The host's decision to keep models off the GPU while idle (``--medvram``/``--lowvram``)."""

import torch

from modules import shared

cpu = torch.device("cpu")


def is_needed(sd_model):
    return shared.cmd_opts.lowvram or shared.cmd_opts.medvram or shared.cmd_opts.medvram_sdxl and hasattr(sd_model, "conditioner")
