"""What fusion costs, as paired ratios of interleaved runs: the SNB step, a schedule, the
extension switched off.

    python -m bench.costs [--size 512] [--hidden 96] [--rounds 5]

On the stand-in WebUI with random SD1-shaped UNets (``bench/sd_like_unet.py``) on this
machine's device. Every configuration runs once per round, in turn (A alone, B alone, SNB,
A alone, ...); each round gives one ratio and the figures are the median, min and max of
those ratios, printed beside the floor the schedule allows, counted in UNet calls:

- a full-window SNB step against the A-alone step plus the B-alone step (the WebUI's own
  steps with either checkpoint active). Floor 1.000: a fused step makes exactly the UNet
  calls of the two alone steps. Target <= 1.02;
- ``600,1,1`` mode 2 with DDIM against A alone. Floor: (calls + fused calls) / calls, e.g.
  (99 + 40) / 99 = 1.404 at 100 steps (the official code runs both models every step: 2.0).
  Target <= 1.02 x the floor;
- the extension installed but disabled against no extension. Floor 1.000: nothing runs.
  Target <= 1.005;
- cross-model guidance and base uncond on every step against A alone. Floors in UNet rows:
  guidance adds B's cond rows only (1.5), base uncond trades A's uncond rows for B's (1.0);
  beside them the same floors in this machine's UNet time, since a call of two rows need not
  cost twice a call of one (measured in the same run, interleaved).

The first two time the sampler's denoiser calls only (the CFG denoiser's ``forward``, GPU work
included), so prompt encoding, the VAE and the sampler's own update drop out; the third
times whole generations, since that is where a disabled extension could cost. The share of
that cost spent inside the script's hooks is printed as an estimate.
"""

from __future__ import annotations

import argparse
import statistics
from typing import Any, Callable

from bench.standin import add_device_options, clock, from_options, interleaved, machine, ratios, spread, synchronize, timed, unet_name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512, help="image width and height")
    parser.add_argument("--hidden", type=int, default=96, help="UNet width (channels of the first level)")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (one ratio each)")
    parser.add_argument("--steps", type=int, default=8, help="Euler steps of a step-cost generation")
    parser.add_argument("--schedule-steps", type=int, default=100, help="DDIM steps of the schedule's generations")
    add_device_options(parser)
    options = parser.parse_args()
    host = from_options(options)
    size = {"width": options.size, "height": options.size}
    host.latents(None, extension=False, steps=1, **size)  # warm-up
    fused_all = {"enabled": True, "model": "expert", "fusion_selection": "1000,1,1", "mode": 1}
    host.latents(fused_all, steps=1, **size)  # loads and caches the fusion checkpoint
    clock = DenoiserClock()

    def denoising(active: str, fusion: dict | None, **kwargs: Any) -> Callable[[], float]:
        """Seconds inside the denoiser calls of one generation with ``active`` loaded."""

        def run() -> float:
            host.load(active)
            before = clock.seconds
            host.latents(fusion, extension=fusion is not None, **{**size, **kwargs})
            return clock.seconds - before

        return run

    euler = {"sampler_name": "Euler", "steps": options.steps}
    steps = interleaved(
        options.rounds,
        {
            "A alone": denoising("general", None, **euler),
            "B alone": denoising("expert", None, **euler),
            "SNB": denoising("general", fused_all, **euler),
        },
    )
    step_ratios = ratios(steps["SNB"], [a + b for a, b in zip(steps["A alone"], steps["B alone"])])
    whole = {"fusion_selection": "1000,1,1", "mode": 1, "enabled": True, "model": "expert"}
    methods = interleaved(
        options.rounds,
        {
            "A alone": denoising("general", None, **euler),
            "guidance": denoising("general", {**whole, "method": "guidance", "guidance_weight": 2.0}, **euler),
            "base_uncond": denoising("general", {**whole, "method": "base_uncond"}, **euler),
        },
    )

    row_costs = _row_costs(host, options.size // 8, options.rounds)

    ddim = {"sampler_name": "DDIM", "steps": options.schedule_steps}
    schedule = {"enabled": True, "model": "expert", "fusion_selection": "600,1,1", "mode": 2}
    p = host.processing(schedule, **size, **ddim)
    from modules import processing

    processing.process_images(p)
    calls, fused = len(p.model_fusion_run.stats.kinds), p.model_fusion_run.stats.fused_steps
    scheduled = interleaved(
        options.rounds, {"A alone": denoising("general", None, **ddim), "600,1,1": denoising("general", schedule, **ddim)}
    )
    clock.close()

    short = {**size, "steps": options.steps, "sampler_name": "Euler"}
    off_rounds = max(5, 3 * options.rounds)
    off = interleaved(
        off_rounds,
        {
            "disabled": lambda: timed(lambda: host.latents({"enabled": False}, **short))[0],
            "none": lambda: timed(lambda: host.latents(None, extension=False, **short))[0],
        },
    )
    hooks, total = _hook_time(host, lambda: host.latents({"enabled": False}, **short), off_rounds)

    print(f"machine: {machine()}")
    print(f"stand-in WebUI, {unet_name(options)}, {options.size}x{options.size}, {options.rounds} interleaved rounds")
    a, b, s = (sum(steps[name]) / (options.rounds * options.steps) * 1e3 for name in ("A alone", "B alone", "SNB"))
    print(f"denoiser time per step: A alone {a:.1f} ms, B alone {b:.1f} ms, SNB {s:.1f} ms")
    print(f"SNB step / (A step + B step): {spread(step_ratios)}; floor 1.000; target <= 1.02")
    single = statistics.median(row_costs)
    print(f"this machine's UNet: two calls of 1 row / one call of 2 rows = {spread(row_costs)}")
    for method, floor_rows, floor_time in (("guidance", 1.5, 1 + single / 2), ("base_uncond", 1.0, single)):
        measured = spread(ratios(methods[method], methods["A alone"]))
        print(
            f"{method}, every step / A alone: {measured}; floor {floor_rows:.3f} in UNet rows, {floor_time:.3f} in this "
            f"UNet's time for those calls; target <= {1.02 * floor_rows:.2f}"
        )
    floor = (calls + fused) / calls
    print(f"600,1,1 mode 2, DDIM {options.schedule_steps} steps: {fused} of {calls} calls fused,", end=" ")
    print(f"floor ({calls} + {fused}) / {calls} = {floor:.3f}")
    schedule_ratios = ratios(scheduled["600,1,1"], scheduled["A alone"])
    print(f"600,1,1 mode 2 / A alone: {spread(schedule_ratios)}; floor {floor:.3f}; target <= {1.02 * floor:.3f}")
    print(f"extension disabled / no extension: {spread(ratios(off['disabled'], off['none']), 4)}; floor 1.0000; target <= 1.005")
    print(
        f"  estimate from the time inside the script's hooks: {1 + hooks / (total - hooks):.5f} "
        f"({hooks / off_rounds * 1e6:.0f} us a generation)"
    )


class Stopwatch:
    """Seconds spent inside the callables it wraps, added up."""

    def __init__(self, wait_for_device: bool = False) -> None:
        self.seconds = 0.0
        self.wait_for_device = wait_for_device
        """Count queued GPU work as the call's own; hooks that launch nothing must not be
        charged with the work queued before them."""

    def wrap(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        def clocked(*args: Any, **kwargs: Any) -> Any:
            if self.wait_for_device:
                synchronize()
            start = clock()
            try:
                return fn(*args, **kwargs)
            finally:
                if self.wait_for_device:
                    synchronize()
                self.seconds += clock() - start

        return clocked


class DenoiserClock(Stopwatch):
    """Seconds inside the WebUI's CFG denoiser calls (every model pass of a step and the
    fusion around them) while it is open."""

    def __init__(self) -> None:
        from modules.sd_samplers_cfg_denoiser import CFGDenoiser

        super().__init__(wait_for_device=True)
        self.cls, self.original = CFGDenoiser, CFGDenoiser.forward
        CFGDenoiser.forward = self.wrap(self.original)

    def close(self) -> None:
        self.cls.forward = self.original


def _row_costs(host: Any, latent: int, rounds: int) -> list[float]:
    """The active UNet on the batch of one image: two calls of one row (what base uncond and
    guidance's B make) over one call of two rows (A's cond and uncond together), interleaved.
    Time is not proportional to rows on every device, so the row floors get this beside them."""
    import torch
    from modules import shared

    unet = shared.sd_model.model.diffusion_model
    device = shared.sd_model.device
    x, t = torch.randn(2, 4, latent, latent, device=device), torch.full((2,), 500.0, device=device)
    context = shared.sd_model.get_learned_conditioning(["", ""]).to(device)
    times = interleaved(
        rounds,
        {
            "rows": lambda: timed(lambda: unet(x, t, context=context))[0],
            "single": lambda: timed(lambda: [unet(x[i : i + 1], t[i : i + 1], context=context[i : i + 1]) for i in range(2)])[0],
        },
    )
    return ratios(times["single"], times["rows"])


HOOKS = ("process", "process_before_every_sampling", "postprocess_image_after_composite", "postprocess")


def _hook_time(host: Any, generate: Callable[[], object], runs: int) -> tuple[float, float]:
    """Seconds spent inside the script's hooks over ``runs`` generations, and in all."""
    stopwatch = Stopwatch()
    script = host.script
    for name in HOOKS:
        setattr(script, name, stopwatch.wrap(getattr(script, name)))
    try:
        start = clock()
        for _ in range(runs):
            generate()
        total = clock() - start
    finally:
        for name in HOOKS:
            delattr(script, name)
    return stopwatch.seconds, total


if __name__ == "__main__":
    main()
