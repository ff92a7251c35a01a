from lib_fusion.arguments.args import FusionArgs
from lib_fusion.ui import region_table
from lib_fusion.ui.region_table import add_mask, json_from_table, table_from_json

TEXT = '[{"box":[0.0,0.0,0.5,1.0],"prompt":"a cat"},{"mask":"MASK","model":"active","weight":2.0},{"box":[0.5,0.0,0.5,1.0]}]'


def test_table_and_json_round_trip():
    rows = table_from_json(TEXT)
    assert rows[0] == ["box", 0.0, 0.0, 0.5, 1.0, "a cat", "", "fusion", 1.0]
    assert rows[1][:1] == ["mask 1"] and rows[1][7:] == ["active", 2.0]
    assert json_from_table(rows, TEXT) == TEXT


def test_typed_cells_become_numbers_and_blank_rows_vanish():
    rows = [["box", "0.25", "0", "0.5", "1", "", "", "", ""], ["", "", "", "", "", "", "", "", ""]]
    assert json_from_table(rows, "[]") == '[{"box":[0.25,0.0,0.5,1.0]}]'


def test_bad_cells_are_kept_for_the_validator_to_name():
    text = json_from_table([["box", "left", 0, 1, 1, "", "", "expert", 1]], "[]")
    assert '"left"' in text and '"model":"expert"' in text  # any checkpoint's name is the validator's (and the host's) to judge
    try:
        FusionArgs.parse({"method": "regions", "regions": text})
    except ValueError as error:
        assert "regions[0].box" in str(error)
    else:
        raise AssertionError("a bad table row validated")


def test_mask_rows_keep_their_masks_when_reordered_and_masks_can_be_added():
    text = add_mask(add_mask("[]", "ONE"), "TWO", prompt="a dog")
    rows = table_from_json(text)
    assert [row[0] for row in rows] == ["mask 1", "mask 2"]
    assert json_from_table(rows[::-1], text) == '[{"mask":"TWO","prompt":"a dog"},{"mask":"ONE"}]'
    assert json_from_table(rows + [["mask 3", "", "", "", "", "", "", "", ""]], text) == text  # no third mask to show
    assert table_from_json("not json") == []


def test_the_table_always_has_a_row_and_blank_cells_of_any_kind_are_no_region():
    """Gradio 4 (Forge) cannot draw a table of no row: the empty table is one blank row,
    whose number cells may come back as NaN (blank text in a number column) or None."""
    assert region_table.table_value([]) == {"headers": region_table.HEADERS, "data": [[""] * len(region_table.HEADERS)]}
    assert region_table.table_value([["box", 0, 0, 1, 1]])["data"] == [["box", 0, 0, 1, 1]]
    blank = ["", float("nan"), None, float("nan"), float("nan"), "", None, "", float("nan")]
    assert region_table.json_from_table([blank], "[]") == "[]"
