"""How the UI shows a failed generation: ``wrap_gradio_call``'s error path (gallery empty,
the error as HTML in the info box)."""

import html

from modules import errors


def wrap_gradio_call(func, extra_outputs=None):
    def f(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except Exception as e:
            errors.report("Error completing request", exc_info=True)
            error_message = f"{type(e).__name__}: {e}"
            return [None, "", f"<div class='error'>{html.escape(error_message)}</div>"]

    return f
