"""Model Fusion: an always-visible WebUI script; wires the UI and the hooks to ``lib_fusion``."""

from modules import script_callbacks, scripts

from lib_fusion import api, host, xyz
from lib_fusion.args import TITLE, FusionArgs, FusionArgumentError


class ModelFusionScript(scripts.Script):
    def title(self) -> str:
        return TITLE

    def show(self, is_img2img: bool):
        return scripts.AlwaysVisible

    def ui(self, is_img2img: bool):
        from lib_fusion import ui

        controls = ui.build(is_img2img, self.elem_id)
        self.infotext_fields = controls.infotext_fields
        self.paste_field_names = controls.paste_field_names
        return controls.components

    def process(self, p, *args):
        try:
            fusion_args = xyz.with_overrides(FusionArgs.from_script_args(args), getattr(p, xyz.OVERRIDES, None))
        except FusionArgumentError as error:
            host.start_with_error(p, error)
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
