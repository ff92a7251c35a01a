"""Run by ``test_real_forge_cfg.py`` with a Forge or Forge Neo checkout's own Python, from its
root: that host's ``calc_cond_uncond_batch`` and ``sampling_function_inner`` against the
extension's ``weighted_mean`` combine on the same model outputs. Prints one line per case and
``worst <difference>`` last."""

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HOST = Path.cwd()
cpu_flag = "--cpu" if "--cpu" in (HOST / "backend" / "args.py").read_text() else "--always-cpu"  # Neo | Forge main
sys.argv = [sys.argv[0], cpu_flag]
vendored = [HOST / folder for folder in ("packages_3rdparty", "modules_forge/packages") if (HOST / folder).is_dir()]  # gguf
sys.path[:0] = [str(ROOT), str(HOST), *map(str, vendored)]
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import torch  # noqa: E402
from backend.sampling import sampling_function  # noqa: E402
from backend.sampling.condition import compile_conditions, compile_weighted_conditions  # noqa: E402

from lib_fusion.fusion.guidance import combine  # noqa: E402


class Model:
    """A model whose output depends on its input and the row's text: enough to tell rows apart."""

    def apply_model(self, x, t, **conditioning):
        text = conditioning["c_crossattn"].mean(dim=(1, 2)).view(-1, 1, 1, 1)
        return x * 0.5 + text * torch.linspace(-1, 1, x[0].numel()).view(1, *x.shape[1:])

    def memory_required(self, shape):
        return 0


torch.manual_seed(0)
batch = 2
x, sigma = torch.randn(batch, 4, 8, 8), torch.full((batch,), 3.0)
worst = 0.0
for weights in [(1.0,), (0.3,), (0.7, 0.6), (1.0, 1.0, 0.3)]:
    count = len(weights)
    text, negative = torch.randn(batch * count, 77, 16), torch.randn(batch, 77, 16)
    conds_list = [[(image * count + j, weight) for j, weight in enumerate(weights)] for image in range(batch)]
    for scale in (7.0, 3.5, 1.0):
        cond, uncond = compile_weighted_conditions(text, conds_list), compile_conditions(negative)
        host, _, _ = sampling_function.sampling_function_inner(Model(), x, sigma, uncond, cond, scale, {}, seed=1, return_full=True)
        cond_rows = Model().apply_model(x.repeat_interleave(count, 0), sigma, c_crossattn=text)
        uncond_rows = Model().apply_model(x, sigma, c_crossattn=negative)
        ours = combine(uncond_rows, cond_rows, conds_list, scale, "weighted_mean")
        difference = float((host - ours).abs().max())
        worst = max(worst, difference)
        print(f"weights {weights} CFG {scale}: {'bit-identical' if torch.equal(host, ours) else difference}")
print(f"worst {worst}")
