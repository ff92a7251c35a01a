"""What fusion costs, as ratios measured in one run: the SNB step, a schedule, the extension
switched off.

    python -m bench.costs [--size 512] [--hidden 96] [--repeats 3]

On the stand-in WebUI with random SD1-shaped UNets (``bench/sd_like_unet.py``) on this
machine's device. Prints:

- the step time of full-window SNB against the A-alone step plus the B-alone step (the
  WebUI's own steps with either checkpoint active), each from the difference between a
  long and a short generation so prompt encoding and the VAE drop out, best of rounds that
  take every configuration in turn (target <= 1.02);
- ``600,1,1`` mode 2 with DDIM at 100 steps against A alone (target <= 1.43; the official
  code runs both models every step: 2.0), with the share of fused steps the schedule asks for;
- the extension installed but disabled against no extension (target <= 1.005): end to end
  (best of interleaved runs; this machine's noise is about 1 %), and from the time spent
  inside the script's hooks, which is exact.
"""

from __future__ import annotations

import argparse
import time
from typing import Any, Callable

from bench.standin import add_device_options, best_of, from_options, machine, synchronize, unet_name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512, help="image width and height")
    parser.add_argument("--hidden", type=int, default=96, help="UNet width (channels of the first level)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--short", type=int, default=4, help="steps of the short generation of a step-time pair")
    parser.add_argument("--long", type=int, default=16, help="steps of the long one")
    parser.add_argument("--schedule-steps", type=int, default=100)
    add_device_options(parser)
    options = parser.parse_args()
    host = from_options(options)
    size = {"width": options.size, "height": options.size, "sampler_name": "Euler"}
    host.latents(None, extension=False, steps=1, **size)  # warm-up

    def generation(fusion: dict | None, extension: bool = True, **kwargs: Any) -> Callable[[], object]:
        return lambda: host.latents(fusion, extension=extension, **{**size, **kwargs})

    fused_all = {"enabled": True, "model": "expert", "fusion_selection": "1000,1,1", "mode": 1}
    host.latents(fused_all, steps=1, **size)  # loads and caches the fusion checkpoint
    configs = {
        "SNB": ("general", lambda steps: generation(fused_all, steps=steps)),
        "A alone": ("general", lambda steps: generation(None, extension=False, steps=steps)),
        "B alone": ("expert", lambda steps: generation(None, extension=False, steps=steps)),
    }
    runs = [(name, steps) for name in configs for steps in (options.short, options.long)]
    best, inside, outside = ({run: float("inf") for run in runs} for _ in range(3))
    clock = UNetClock(type(host.load("general").model.diffusion_model))
    for _ in range(options.repeats):  # rounds, so drifts of the machine touch every configuration alike
        for name, (active, make) in configs.items():
            host.load(active)
            for steps in (options.short, options.long):
                before = clock.seconds
                seconds = best_of(1, make(steps))[0]
                unet = clock.seconds - before
                best[name, steps] = min(best[name, steps], seconds)
                inside[name, steps], outside[name, steps] = min(inside[name, steps], unet), min(outside[name, steps], seconds - unet)
    clock.close()
    host.load("general")

    def per_step(times: dict[tuple[str, int], float]) -> dict[str, float]:
        return {name: (times[name, options.long] - times[name, options.short]) / (options.long - options.short) for name in configs}

    step, unet, rest = per_step(best), per_step(inside), per_step(outside)
    fused, alone_a, alone_b = step["SNB"], step["A alone"], step["B alone"]
    # The fused step runs the very UNet calls of the two alone steps (same rows, same
    # shapes), so with the UNet time of those calls shared out, what is left is exact.
    shared_out = (unet["A alone"] + unet["B alone"] + rest["SNB"]) / (unet["A alone"] + rest["A alone"] + unet["B alone"] + rest["B alone"])

    steps = options.schedule_steps
    schedule = {"enabled": True, "model": "expert", "fusion_selection": "600,1,1", "mode": 2}
    p = host.processing(schedule, steps=steps, **{**size, "sampler_name": "DDIM"})
    from modules import processing

    processing.process_images(p)
    share = p.model_fusion_run.stats.fused_steps / len(p.model_fusion_run.stats.kinds)
    scheduled, _ = best_of(options.repeats, generation(schedule, steps=steps, sampler_name="DDIM"))
    plain, _ = best_of(options.repeats, generation(None, extension=False, steps=steps, sampler_name="DDIM"))

    off_runs = max(5, 3 * options.repeats)
    disabled, bare = _interleaved(
        off_runs, generation({"enabled": False}, steps=options.short), generation(None, False, steps=options.short)
    )

    print(f"machine: {machine()}")
    print(f"stand-in WebUI, {unet_name(options)}, {options.size}x{options.size}, best of {options.repeats}")
    print(f"step: SNB {fused * 1e3:.1f} ms, A alone {alone_a * 1e3:.1f} ms, B alone {alone_b * 1e3:.1f} ms")
    print(f"SNB step / (A step + B step): {fused / (alone_a + alone_b):.3f} (target <= 1.02)")
    print(
        f"  the same with the UNet calls' time shared out: {shared_out:.4f} (outside the UNet a step spends "
        f"SNB {rest['SNB'] * 1e3:.2f} ms, A {rest['A alone'] * 1e3:.2f} ms, B {rest['B alone'] * 1e3:.2f} ms; "
        f"inside: SNB {unet['SNB'] * 1e3:.1f} ms, A + B {(unet['A alone'] + unet['B alone']) * 1e3:.1f} ms)"
    )
    print(f"600,1,1 mode 2, DDIM {steps} steps: {share:.0%} of the steps fused, so at best {1 + share:.2f}")
    print(f"600,1,1 mode 2 / A alone: {scheduled / plain:.3f} (target <= 1.43; official code 2.0)")
    print(f"extension disabled / no extension: {disabled / bare:.4f} (target <= 1.005; best of {off_runs}, interleaved)")
    hooks, total = _hook_time(host, generation({"enabled": False}, steps=options.short), off_runs)
    attributed = 1 + hooks / (total - hooks)
    print(f"  the same from the time inside the script's hooks: {attributed:.5f} ({hooks / off_runs * 1e6:.0f} us a generation)")


class Stopwatch:
    """Seconds spent inside the callables it wraps, added up."""

    def __init__(self, wait_for_device: bool = False) -> None:
        self.seconds = 0.0
        self.wait_for_device = wait_for_device
        """Count queued GPU work as the call's own (the UNet's); hooks that launch nothing
        must not be charged with the work queued before them."""

    def wrap(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            if self.wait_for_device:
                synchronize()
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                if self.wait_for_device:
                    synchronize()
                self.seconds += time.perf_counter() - start

        return timed


class UNetClock(Stopwatch):
    """Seconds spent inside the forward of every UNet of one class (the active model's and
    the cached fusion UNet alike) while it is open."""

    def __init__(self, cls: type) -> None:
        super().__init__(wait_for_device=True)
        self.cls, self.original = cls, cls.forward
        cls.forward = self.wrap(self.original)

    def close(self) -> None:
        self.cls.forward = self.original


HOOKS = ("process", "process_before_every_sampling", "postprocess_image_after_composite", "postprocess")


def _hook_time(host: Any, generate: Callable[[], object], runs: int) -> tuple[float, float]:
    """Seconds spent inside the script's hooks over ``runs`` generations, and in all: the
    disabled extension's whole cost, free of the machine's run-to-run noise."""
    stopwatch = Stopwatch()
    script = host.script
    for name in HOOKS:
        setattr(script, name, stopwatch.wrap(getattr(script, name)))
    try:
        start = time.perf_counter()
        for _ in range(runs):
            generate()
        total = time.perf_counter() - start
    finally:
        for name in HOOKS:
            delattr(script, name)
    return stopwatch.seconds, total


def _interleaved(runs: int, first: Callable[[], object], second: Callable[[], object]) -> tuple[float, float]:
    """Best times of two generations run in turn, so drifts of the machine touch both alike."""
    best_first = best_second = float("inf")
    for _ in range(runs):
        best_first = min(best_first, best_of(1, first)[0])
        best_second = min(best_second, best_of(1, second)[0])
    return best_first, best_second


if __name__ == "__main__":
    main()
