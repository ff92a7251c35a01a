"""The WebUI's SDXL prompt encoding (``modules/sd_models_xl.py``): sgm's input dict built
from the prompts and the image size, through ``self.conditioner`` (nothing else of the model)."""

import tiny_sd


def get_learned_conditioning(self, batch):
    return tiny_sd.sdxl_conditioning(self.conditioner, batch)
