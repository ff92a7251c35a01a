"""Model Fusion: an always-visible WebUI script; wires the UI and the hooks to ``lib_fusion``."""

import functools
from typing import Any

from modules import script_callbacks, scripts

from lib_fusion import api, host
from lib_fusion.arguments import xyz
from lib_fusion.arguments.args import TITLE, FusionArgs, as_fusion_error, script_data


class ModelFusionScript(scripts.Script):
    def __init__(self) -> None:
        super().__init__()
        self.sampling: dict[str, dict[str, Any]] = {"txt2img": {}, "img2img": {}}
        """Per tab, the sampler, scheduler and steps components, and img2img's denoising strength
        (the schedule label follows them)."""
        for tab, parts in self.sampling.items():
            keys = [("sampler", "sampling"), ("scheduler", "scheduler"), ("steps", "steps")]
            if tab == "img2img":
                keys.append(("strength", "denoising_strength"))
            for key, suffix in keys:
                self.on_after_component(functools.partial(self._keep, parts, key), elem_id=f"{tab}_{suffix}")

    @staticmethod
    def _keep(parts: dict[str, Any], key: str, params: Any) -> None:
        parts[key] = params.component

    def title(self) -> str:
        return TITLE

    def show(self, is_img2img: bool):
        return scripts.AlwaysVisible

    def ui(self, is_img2img: bool):
        from lib_fusion.ui import accordion

        controls = accordion.build(is_img2img, self.elem_id, self.sampling["img2img" if is_img2img else "txt2img"])
        self.infotext_fields = controls.infotext_fields
        self.paste_field_names = controls.paste_field_names
        return controls.components

    def process(self, p, *args):
        try:
            fusion_args = FusionArgs.for_generation(xyz.with_overrides(script_data(args), getattr(p, xyz.OVERRIDES, None)))
        except Exception as error:  # the host would swallow it: p.sample raises it instead
            host.start_with_error(p, as_fusion_error(error))
            return
        host.start(p, fusion_args)

    def process_before_every_sampling(self, p, *args, **kwargs):
        host.begin_pass(p)

    def postprocess_image_after_composite(self, p, pp, *args):
        host.keep_result(p, pp.image)

    def postprocess(self, p, processed, *args):
        host.finish(p, processed)


script_callbacks.on_app_started(lambda _demo, app: api.register(app))
script_callbacks.on_script_unloaded(host.unload)
script_callbacks.on_ui_settings(host.add_settings)
script_callbacks.on_before_ui(lambda: xyz.register(host.xyz_grid_module(), host.checkpoint_titles))
