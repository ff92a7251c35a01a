"""``modules.images``: saving. Saved images are kept in ``saved`` (and written under ``path``)."""

import os

from PIL import PngImagePlugin

saved = []
"""(path, basename, suffix, image, info) of every save, oldest first."""


def save_image(
    image,
    path,
    basename,
    seed=None,
    prompt=None,
    extension="png",
    info=None,
    short_filename=False,
    no_prompt=False,
    grid=False,
    pnginfo_section_name="parameters",
    p=None,
    existing_info=None,
    forced_filename=None,
    suffix="",
    save_to_dirs=None,
):
    os.makedirs(path, exist_ok=True)
    filename = os.path.join(path, f"{len(saved):05d}-{basename or seed}{suffix}.{extension}")
    pnginfo = PngImagePlugin.PngInfo()
    if info is not None:
        pnginfo.add_text("parameters", info)  # what the WebUI writes into a PNG
    image.save(filename, pnginfo=pnginfo)
    saved.append((path, basename, suffix, image, info))
    return filename, None
