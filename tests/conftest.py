import os

import torch
from hypothesis import settings

# The tests' models are tiny: one thread is as fast, and a busy machine cannot stall it the
# way it stalls OpenMP threads waiting for each other at every barrier.
torch.set_num_threads(1)

# Property tests draw one fixed sequence of examples on every machine (a failing property fails
# everywhere, every run) with no deadline (a loaded machine is slow, not wrong). To look for new
# counterexamples: HYPOTHESIS_PROFILE=explore.
settings.register_profile("fixed", derandomize=True, database=None, deadline=None)
settings.register_profile("explore", database=None, deadline=None, max_examples=500)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "fixed"))
