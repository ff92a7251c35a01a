"""The X/Y/Z plot as far as extensions and cells go (``scripts/xyz_grid.py``): ``AxisOption``,
``axis_options``, and a run that copies ``p`` per cell, converts each value with the axis's
type and applies it before ``process_images``."""

from copy import copy

from modules import processing, scripts


class AxisOption:
    def __init__(self, label, type, apply, format_value=None, confirm=None, cost=0.0, choices=None, prepare=None):
        self.label, self.type, self.apply, self.choices = label, type, apply, choices


class Script(scripts.Script):
    """Registered in ``scripts.scripts_data`` as the WebUI does (module name "xyz_grid.py")."""


Script.__module__ = "xyz_grid.py"
axis_options = [AxisOption("Seed", int, lambda p, x, xs: setattr(p, "seed", x))]


def option(label):
    return next(o for o in axis_options if o.label == label)


def run(p, label, values):
    """One row of cells: the processed result of each value."""
    opt = option(label)
    values = [opt.type(v) for v in values]
    cells = []
    for value in values:
        pc = copy(p)
        opt.apply(pc, value, values)
        cells.append((pc, processing.process_images(pc)))
    return cells
