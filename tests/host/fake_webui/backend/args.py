"""``backend.args.dynamic_args``: values read while a model is built. Forge main keeps them in a
dict; Neo in the attributes of a class that answers item access through its metaclass, with
a ``reset`` its loader calls (see ``flavour.py``)."""


def forge_dynamic_args() -> dict:
    return {"embedding_dir": None, "emphasis_name": "Original", "forge_unet_storage_dtype": None}


class _DynamicArgsMeta(type):
    def get(cls, key, default=None):
        return getattr(cls, key, default)

    def __getitem__(cls, key):
        return getattr(cls, key, None)

    def __setitem__(cls, key, value):
        setattr(cls, key, value)

    def __contains__(cls, key):
        return hasattr(cls, key)


def neo_dynamic_args() -> type:
    """Neo's ``dynamic_args`` (its fields that matter here), a new class per stand-in WebUI so
    that nothing one test sets is seen by the next."""

    class dynamic_args(metaclass=_DynamicArgsMeta):  # noqa: N801 (Neo's name)
        embedding_dir = None
        forge_unet_storage_dtype = None
        kontext = False
        klein = False
        ref_latents: list = []
        last_extra_generation_params: dict = {}

        @classmethod
        def reset(cls):
            cls.ref_latents.clear()
            cls.last_extra_generation_params = {}

    return dynamic_args


dynamic_args = forge_dynamic_args()
