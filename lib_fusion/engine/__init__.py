"""One generation without the WebUI: the run, its passes, the checkpoint cache, the outputs and pictures.
Imports the maths (``fusion``) and the contract (``arguments``), never the host.
"""
