from types import SimpleNamespace


class State:
    def __init__(self):
        self.reset()

    def reset(self):
        self.interrupted = False
        self.skipped = False
        self.sampling_step = 0
        self.sampling_steps = 0
        self.textinfo = None
        self.job_count = -1
        self.job_no = 0

    def nextjob(self):
        self.job_no += 1
        self.sampling_step = 0


class OptionInfo:
    def __init__(self, default=None, label="", component=None, component_args=None, onchange=None, section=None, **kwargs):
        self.default, self.label, self.section, self.onchange = default, label, section, onchange


class Options(SimpleNamespace):
    """``shared.opts``: attributes, plus settings that extensions add with their defaults."""

    def add_option(self, key, info):
        self.__dict__.setdefault("data_labels", {})[key] = info
        if not hasattr(self, key):
            setattr(self, key, info.default)

    def set(self, key, value):
        """As the Settings page and ``POST /sdapi/v1/options`` set an option: the value, then its ``onchange``."""
        setattr(self, key, value)
        info = self.__dict__.get("data_labels", {}).get(key)
        if info is not None and info.onchange is not None:
            info.onchange()


def default_opts():
    return Options(
        batch_cond_uncond=True,
        skip_early_cond=0.0,
        s_min_uncond_all=False,
        pad_cond_uncond=False,
        pad_cond_uncond_v0=False,
        use_old_scheduling=False,
        enable_quantization=False,
        live_preview_content="Prompt",
        enable_pnginfo=True,
        samples_save=False,  # the WebUI saves by default; the stand-in only where a test asks
        samples_format="png",
        grid_save=False,
        grid_format="png",
        grid_extended_filename=False,
        return_grid=False,
        overlay_inpaint=True,
    )


opts = default_opts()
state = State()


def default_cmd_opts():
    return SimpleNamespace(
        no_half=True,
        upcast_sampling=False,
        precision="full",
        medvram=False,
        medvram_sdxl=False,
        lowvram=False,
        api=False,
        nowebui=False,
        api_auth=None,
    )


cmd_opts = default_cmd_opts()
sd_model = None
device = "cpu"
