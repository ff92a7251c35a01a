"""Host round trips per step: what the extension's own code copies to the device or reads back.

On a GPU every tensor made from host data (``torch.tensor``, a list used as an index, a
``.to(device)``) is a host-to-device copy, and every value read back (``float``, ``bool``,
``.item()``, ``.tolist()``) waits for the queue to drain. On the CPU there is no second
device, so the test watches the operations themselves: a ``TorchFunctionMode`` sees every
torch call, and those made from ``lib_fusion`` (not from the host or the model) are counted
per denoiser call. The first call of a sampling pass may move its layout to the device;
every later call must copy nothing and read nothing, but the one timestep the two-model
methods read to choose which UNets to run.
"""

import sys
from collections import Counter
from pathlib import Path

import pytest
import torch
from modules import script_callbacks
from torch.overrides import TorchFunctionMode

LIB = str(Path(__file__).resolve().parents[2] / "lib_fusion")
TORCH = str(Path(torch.__file__).resolve().parent)
READS = {"item", "__bool__", "__float__", "__int__", "__index__", "tolist", "numpy", "cpu", "nonzero", "equal"}
MADE_FROM_HOST = {"tensor", "as_tensor", "from_numpy", "cuda"}


def _name(func) -> str:
    return getattr(func, "__name__", str(func))


def _host_index(index) -> bool:
    """A list (or a tuple holding one) used as an index: torch makes an index tensor of it on the host."""
    parts = index if isinstance(index, tuple) else (index,)
    return any(isinstance(part, list) for part in parts)


class Traffic(TorchFunctionMode):
    """Counts reads and host-made tensors issued from ``lib_fusion``, per denoiser call."""

    def __init__(self):
        super().__init__()
        self.call = None
        self.events: list[tuple[object, str]] = []

    def _from_extension(self) -> bool:
        frame = sys._getframe(2)
        while frame is not None and (frame.f_code.co_filename.startswith(TORCH) or frame.f_code.co_filename == __file__):
            frame = frame.f_back
        return frame is not None and frame.f_code.co_filename.startswith(LIB)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = _name(func)
        kind = None
        if name in READS:
            kind = f"read {name}"
        elif name in MADE_FROM_HOST:
            kind = f"copy {name}"
        elif name == "to" and (any(isinstance(a, (torch.device, str, torch.Tensor)) for a in args[1:]) or "device" in kwargs):
            kind = "copy to(device)"
        elif name in ("__getitem__", "__setitem__", "index_put_") and len(args) > 1 and _host_index(args[1]):
            kind = f"copy {name}[list]"
        if kind is not None and self.call is not None and self._from_extension():
            self.events.append((self.call, kind))
        return func(*args, **kwargs)


@pytest.fixture
def traffic():
    watcher = Traffic()

    def on_call(params):
        watcher.call = "first" if params.denoiser.step == 0 else "later"

    script_callbacks.on_cfg_denoiser(on_call)
    try:
        with watcher:
            yield watcher
    finally:
        script_callbacks.remove_callbacks_for_function(on_call)


def later(traffic) -> Counter:
    return Counter(kind for call, kind in traffic.events if call == "later")


@pytest.mark.parametrize("sampler", ["Euler", "DDIM"])
def test_an_snb_step_reads_one_timestep_and_copies_nothing(webui, traffic, sampler):
    fusion = {"enabled": True, "model": "expert", "prompt": "a cartoon lion", "fusion_selection": "500,1,1", "mode": 2}
    webui.generate(fusion, sampler_name=sampler, steps=6, batch_size=2, width=64, height=64)
    timesteps = sum(1 for call, kind in traffic.events if kind == "read __float__" and call == "later")
    assert later(traffic) == Counter({"read __float__": timesteps}) and timesteps >= 4


@pytest.mark.parametrize(("windows", "sampler"), [("overlap", "Euler"), ("shifted", "DDIM")])
def test_a_regions_step_copies_nothing_and_reads_nothing(webui, traffic, windows, sampler):
    regions = [{"box": [0.0, 0.0, 0.5, 1.0], "prompt": "a crown", "model": "fusion"}, {"box": [0.5, 0.0, 0.5, 1.0], "prompt": "a cat"}]
    fusion = {"enabled": True, "model": "expert", "method": "regions", "regions": regions, "bootstrapping": 0.5}
    fusion.update(window=8, stride="auto", windows=windows)
    webui.generate(fusion, sampler_name=sampler, steps=6, batch_size=2, width=256, height=64)
    assert later(traffic) == Counter()
    assert any(call == "first" for call, _ in traffic.events)  # the watcher sees the layout made at the first call


def test_the_watcher_sees_what_it_must_count(traffic):
    """The counter is not blind: made-from-host tensors and reads from lib_fusion are seen."""
    from lib_fusion.fusion import conds

    traffic.call = "later"
    x = torch.zeros(4, 2)
    conds.pick(x, [0, 2])  # slices: nothing
    assert later(traffic) == Counter()
    x[[0, 2]]  # from this test file: not the extension's
    assert later(traffic) == Counter()
    exec(compile("x[[0, 2]]; float(x[0, 0]); torch.tensor([1]); x.to(x)", LIB + "/probe.py", "exec"), {"x": x, "torch": torch})
    assert later(traffic) == Counter({"copy __getitem__[list]": 1, "read __float__": 1, "copy tensor": 1, "copy to(device)": 1})
