"""k-diffusion as AUTOMATIC1111 1.10 ships it (``repositories/k-diffusion``): the denoisers only."""
