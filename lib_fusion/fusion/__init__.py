"""The papers as pure torch: SNB (two and many models), guidance, base uncond, MultiDiffusion views and fuse,
shifted windows, the CFG rows. Imports nothing else of ours (``tests/unit/test_architecture.py``).
"""
