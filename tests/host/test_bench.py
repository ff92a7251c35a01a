"""The benchmarks run and print their ratios (tiny sizes; no time is asserted, only what a
run decides exactly: memory, identical images)."""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def bench(module: str, *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", f"bench.{module}", *args], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout


def number(pattern: str, text: str) -> float:
    found = re.search(pattern, text)
    assert found, f"{pattern!r} not in:\n{text}"
    return float(found.group(1))


def test_costs_prints_each_ratio_beside_its_floor():
    out = bench("costs", "--size", "64", "--hidden", "16", "--rounds", "2", "--steps", "2", "--schedule-steps", "4")
    # Denoiser time is positive whatever the machine's load, so every ratio is a number > 0.
    assert number(r"SNB step / \(A step \+ B step\): median ([\d.]+)", out) > 0
    # DDIM 4 steps at 751, 501, 251 (three calls): 600 fuses one of three, floor 4/3 exactly.
    assert number(r"DDIM 4 steps: (\d+) of 3 calls fused", out) == 1
    assert number(r"floor \(3 \+ 1\) / 3 = ([\d.]+)", out) == 1.333
    assert number(r"600,1,1 mode 2 / A alone: median ([\d.]+)", out) > 0
    assert number(r"extension disabled / no extension: median ([\d.]+)", out) > 0
    assert number(r"guidance, every step / A alone: median ([\d.]+)", out) > 0
    assert number(r"base_uncond, every step / A alone: median ([\d.]+)", out) > 0
    assert number(r"inside the script's hooks: ([\d.]+)", out) >= 1


def test_panorama_gives_the_same_image_at_every_view_batch():
    out = bench("panorama", "--steps", "1", "--repeats", "1", "--width", "256", "--height", "64", "--hidden", "16", "--window", "16")
    assert number(r"max \|difference\| ([\d.e+-]+)", out) < 1e-4
    assert number(r"speed-up of view batch 4 over 1: median ([\d.]+)", out) > 0


def test_loading_adds_no_memory_beyond_the_weights_it_needs():
    out = bench("loading", "--hidden", "16", "--repeats", "1")
    assert number(r"text_encoder solo: .* -> ([\d.]+)", out) <= 1.05
    assert number(r"text_encoder own: .* -> ([\d.]+)", out) <= 1.05


def test_windows_counts_rows_and_shows_the_seams_of_plain_tiles():
    out = bench("windows", "--steps", "1", "--rounds", "1", "--width", "1024", "--height", "512", "--hidden", "16", "--seeds", "3")
    # Latent 128 x 64, window 64: stride 8 makes 9 views; shifted windows 2 or 3 (3 unless the shift is 0).
    assert number(r"MultiDiffusion stride 8: ([\d.]+) UNet rows per step", out) == 18
    assert number(r"shifted windows: ([\d.]+) UNet rows per step", out) in (4, 6)
    assert number(r"time ratio MultiDiffusion / shifted: median ([\d.]+)", out) > 0
    # The measure is not blind: every seed's plain tiles show their seams (a jump at the borders).
    assert number(r"plain tiles \(stride = window\): median [\d.]+ \(min ([\d.]+)", out) > 1.1


def test_overhead_prints_the_time_around_the_unet():
    out = bench("overhead", "--rounds", "1", "--steps", "3")
    assert number(r"SNB step, time beside the models per denoiser call: after ([\d.]+) ms", out) > 0
    assert number(r"Regions step, time beside the models per denoiser call: after ([\d.]+) ms", out) > 0


def test_many_prints_the_three_model_step_beside_its_floor():
    out = bench("many", "--size", "64", "--hidden", "16", "--rounds", "2", "--steps", "2")
    assert number(r"SNB of three step / \(A step \+ B step \+ C step\): median ([\d.]+)", out) > 0
    assert "floor 1.000" in out
