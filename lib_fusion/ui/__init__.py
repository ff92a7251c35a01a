"""The accordion (gradio only): its controls, tables, words and presets. Reaches the WebUI through ``host``."""
