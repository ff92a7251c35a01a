"""The argument contract: the fields, their bounds and messages, masks, the schedule rule, the infotext and
the X/Y/Z axes. Imports nothing else of ours: every wing may import it.
"""
