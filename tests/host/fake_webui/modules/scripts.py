"""Script base class and a runner whose hook loops swallow exceptions, like the host's."""

from collections import namedtuple

from modules import errors

AlwaysVisible = object()

ScriptClassData = namedtuple("ScriptClassData", ["script_class", "path", "basedir", "module"])
scripts_data = []
"""Every loaded script file's class and module (the X/Y/Z plot among them)."""


class Script:
    filename = None
    args_from = None
    args_to = None
    alwayson = False
    is_txt2img = False
    is_img2img = False
    infotext_fields = None
    paste_field_names = None
    on_after_component_elem_id = None

    def title(self):
        raise NotImplementedError

    def show(self, is_img2img):
        return True

    def on_after_component(self, callback, *, elem_id):
        """As the WebUI's: the callback runs with an ``OnComponent`` once that component is built (the UI is not built here)."""
        if self.on_after_component_elem_id is None:
            self.on_after_component_elem_id = []
        self.on_after_component_elem_id.append((elem_id, callback))

    def elem_id(self, item_id):
        return f"script_{'img2img' if self.is_img2img else 'txt2img'}_model_fusion_{item_id}"

    def process(self, p, *args):
        pass

    def process_before_every_sampling(self, p, *args, **kwargs):
        pass

    def postprocess_image_after_composite(self, p, pp, *args):
        pass

    def postprocess(self, p, processed, *args):
        pass


class PostprocessImageArgs:
    def __init__(self, image):
        self.image = image


class ScriptRunner:
    def __init__(self, scripts):
        self.alwayson_scripts = list(scripts)

    def _each(self, hook, p, *extra, **kwargs):
        for script in self.alwayson_scripts:
            try:
                args = p.script_args[script.args_from : script.args_to]
                getattr(script, hook)(p, *extra, *args, **kwargs)
            except Exception:
                errors.report(f"Error running {hook}: {script.filename}", exc_info=True)

    def process(self, p):
        self._each("process", p)

    def process_before_every_sampling(self, p, **kwargs):
        self._each("process_before_every_sampling", p, **kwargs)

    def postprocess_image_after_composite(self, p, pp):
        self._each("postprocess_image_after_composite", p, pp)

    def postprocess(self, p, processed):
        self._each("postprocess", p, processed)
