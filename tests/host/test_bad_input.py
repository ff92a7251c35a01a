"""Bad input (the table in ``tests/bad_input_cases.py``): the generation fails with a
message that names the input and what would be valid, the message reaches the UI's info
box and the API's error body, no image comes back, and nothing of the extension stays behind.

Arguments travel the way the API sends them (one dict in ``alwayson_scripts``); a few
rows set the processing object (image size, refiner) or the checkpoint folder instead.
"""

import html

import pytest
from modules import call_queue, processing, script_callbacks
from modules.api.api import handle_exception

from tests.bad_input_cases import CASES, snb


def test_the_table_is_long_enough():
    assert len(CASES) >= 40
    assert len({case[0] for case in CASES}) == len(CASES)


@pytest.mark.parametrize("name, fusion, kwargs, setup, fragments", CASES, ids=[case[0] for case in CASES])
def test_bad_input_is_named_in_the_ui_and_the_api_and_gives_no_image(webui, name, fusion, kwargs, setup, fragments):
    if setup is not None:
        setup(webui)
    if callable(fusion):
        fusion = snb(model=fusion(webui))
    p = webui.processing(fusion, **kwargs)
    with pytest.raises(ValueError) as raised:
        processing.process_images(p)
    message = str(raised.value)
    assert message.startswith("Model Fusion: "), message
    if name != "a file outside the list":  # that input is a path; no other message shows one
        assert str(webui.models) not in message
    for fragment in fragments:
        assert fragment in message

    # The API: Api.handle_exception answers 500 with the message as "errors".
    status, body = handle_exception(raised.value)
    assert status == 500 and body["errors"] == message

    # The UI: wrap_gradio_call leaves the gallery empty and shows the message.
    p = webui.processing(fusion, **kwargs)
    gallery, _, info = call_queue.wrap_gradio_call(processing.process_images)(p)
    assert gallery is None
    assert html.escape(message) in info

    assert script_callbacks.registered_count() == 0
    assert "sample" not in vars(p), "the p.sample wrapper outlived the failed generation"
