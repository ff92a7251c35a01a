import contextlib


class DisableInitialization(contextlib.nullcontext):
    def __init__(self, disable_clip=True):
        super().__init__()
