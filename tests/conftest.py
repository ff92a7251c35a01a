import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# The tests' models are tiny: one thread is as fast, and a busy machine cannot stall it the
# way it stalls OpenMP threads waiting for each other at every barrier.
torch.set_num_threads(1)
