"""The further fusion checkpoints' table and the models JSON, each editing the other."""

import json
import math

from hypothesis import given, settings
from hypothesis import strategies as st

from lib_fusion.arguments.args import FusionArgs
from lib_fusion.ui.model_table import HEADERS, json_from_table, load_list, table_from_json, table_value

entries = st.lists(
    st.fixed_dictionaries(
        {"model": st.sampled_from(["expert", "artist.safetensors [0123456789]", "a b"])},
        optional={
            "prompt": st.text(min_size=1, max_size=20).filter(str.strip),
            "negative_prompt": st.text(min_size=1, max_size=20).filter(str.strip),
            "k": st.floats(0.5, 5.0),
            "window": st.tuples(st.floats(0, 0.4), st.floats(0.5, 1.0)).map(list),
        },
    ),
    max_size=4,
)


@settings(deadline=None)  # a first example may be slow on a loaded machine; nothing here is timed
@given(entries)
def test_json_to_table_and_back_is_the_same_list(models):
    text = json.dumps(models)
    assert load_list(json_from_table(table_from_json(text))) == models


def test_blank_rows_are_dropped_and_a_table_always_has_a_row():
    rows = [["", "", "", float("nan"), "", ""], ["expert", "a cat", "", "", "", 0.5]]
    assert json_from_table(rows) == '[{"model":"expert","prompt":"a cat","window":[0.0,0.5]}]'
    assert table_value([]) == {"headers": HEADERS, "data": [[""] * len(HEADERS)]}


def test_a_bad_cell_is_kept_for_the_validator_to_name():
    text = json_from_table([["expert", "", "", "much", "", ""]])
    assert '"k":"much"' in text
    try:
        FusionArgs.parse({"enabled": True, "model": "x", "models": text})
    except ValueError as error:
        assert "models[0].k" in str(error)
    else:
        raise AssertionError("a bad k validated")
    assert not math.isnan(load_list(json_from_table([["expert", "", "", 2, "", ""]]))[0]["k"])
