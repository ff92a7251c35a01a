"""The WebUI's SDXL prompt encoding (``modules/sd_models_xl.py``): sgm's input dict built
from the prompts and the image size, through ``self.conditioner`` (nothing else of the model)."""

import torch


def get_learned_conditioning(self, batch):
    width = getattr(batch, "width", 1024) or 1024
    height = getattr(batch, "height", 1024) or 1024
    sdxl_conds = {"txt": batch, "target_size_as_tuple": torch.tensor([height, width]).repeat(len(batch), 1)}
    return self.conditioner(sdxl_conds, force_zero_embeddings=[])
