"""A stand-in for Forge's ``backend`` package (lllyasviel/stable-diffusion-webui-forge main
``dfdcbab6``), written to the contract in ``docs/hosts.md``: the sampling
function's hook order and argument dicts, ``calc_cond_uncond_batch``'s batching and
averaging, the UNet patcher's clone and option lists, ``KModel``'s x0 outputs and nearest
timestep, the memory manager's load/unload, and ``forge_loader`` for a checkpoint path."""
