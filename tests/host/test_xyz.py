"""X/Y/Z plot axes: registered on the WebUI's plot, applied per cell, written to the infotext."""

from copy import copy

import pytest
import xyz_grid
from modules import processing

LABELS = [  # the fields' order, each field's parts after it (lib_fusion.arguments.xyz.AXES)
    "[Fusion] Checkpoint",
    "[Fusion] Checkpoint 2",
    "[Fusion] Checkpoint 3",
    "[Fusion] Method",
    "[Fusion] Prompt",
    "[Fusion] Solo model",
    "[Fusion] v1 (timestep)",
    "[Fusion] kg",
    "[Fusion] ke",
    "[Fusion] Mode",
    "[Fusion] Mask",
    "[Fusion] Bootstrapping",
    "[Fusion] Window",
    "[Fusion] Stride",
    "[Fusion] View batch size",
    "[Fusion] Guidance weight",
    "[Fusion] Mask EMA",
    "[Fusion] Windows",
]


def snb(**overrides):
    return {"enabled": True, "model": "expert", "fusion_selection": "500,1,1", "mode": 2, **overrides}


def test_the_axes_are_registered_once_with_their_choices(webui):
    webui.build_ui()
    webui.build_ui()  # the UI can be rebuilt (reload UI)
    labels = [option.label for option in xyz_grid.axis_options]
    assert labels == ["Seed", *LABELS]
    assert xyz_grid.option("[Fusion] Checkpoint").choices() == sorted(
        webui.title(n) for n in ["artist", "expert", "expert-v", "general", "other-sdxl", "wide"]
    )
    assert xyz_grid.option("[Fusion] Mode").choices() == ["0", "1", "2"]
    assert xyz_grid.option("[Fusion] Method").choices() == ["snb", "regions", "guidance", "base_uncond"]


def test_a_guidance_weight_axis_sweeps_the_weight(webui):
    webui.build_ui()
    fusion = {"enabled": True, "model": "expert", "method": "guidance", "fusion_selection": "1000,1,1", "mode": 1}
    cells = xyz_grid.run(webui.processing(fusion, steps=3), "[Fusion] Guidance weight", [1.0, 3.0])
    plain, guided = (pc for pc, _ in cells)
    assert not hasattr(plain, "model_fusion_run") and "Fusion" not in plain.extra_generation_params  # w = 1 is plain CFG
    assert guided.model_fusion_run.args.guidance_weight == 3.0 and guided.model_fusion_run.stats.fusion_runs > 0


def test_a_checkpoint_axis_fuses_each_cell_with_its_checkpoint_even_when_the_ui_has_fusion_off(webui):
    webui.build_ui()
    p = webui.processing(snb(enabled=False), steps=4)
    cells = xyz_grid.run(p, "[Fusion] Checkpoint", ["expert", "artist"])
    titles = [pc.model_fusion_run.plan.fusion.title for pc, _ in cells]
    assert titles == [webui.title("expert"), webui.title("artist")]
    assert [f"Fusion model: {title}" in processed.infotexts[0] for (_, processed), title in zip(cells, titles)] == [True, True]
    assert all(pc.model_fusion_run.stats.fused_steps > 0 for pc, _ in cells)
    assert getattr(p, "model_fusion_overrides", None) is None  # the source p is left alone


@pytest.mark.parametrize(
    "label, values, read",
    [
        ("[Fusion] v1 (timestep)", ["300", "700"], lambda args: args.fusion_selection),
        ("[Fusion] kg", ["0.5", "2"], lambda args: args.fusion_selection),
        ("[Fusion] ke", ["3"], lambda args: args.fusion_selection),
        ("[Fusion] Mode", ["1", "2"], lambda args: args.mode),
        ("[Fusion] Solo model", ["fusion"], lambda args: args.solo),
        ("[Fusion] Mask", ["soft"], lambda args: args.mask),
        ("[Fusion] Prompt", ["a cartoon lion"], lambda args: args.prompt),
    ],
)
def test_snb_axes_set_their_field(webui, label, values, read):
    webui.build_ui()
    cells = xyz_grid.run(webui.processing(snb(), steps=3), label, values)
    got = [read(pc.model_fusion_run.args) for pc, _ in cells]
    expected = {
        "[Fusion] v1 (timestep)": ["300,1,1", "700,1,1"],
        "[Fusion] kg": ["500,0.5,1", "500,2,1"],
        "[Fusion] ke": ["500,1,3"],
        "[Fusion] Mode": [1, 2],
    }.get(label, values)
    assert got == expected
    if label == "[Fusion] v1 (timestep)":  # the window moves: fewer fused steps at v1 = 700 (mode 2 fuses t > v1)
        assert cells[0][0].model_fusion_run.stats.fused_steps > cells[1][0].model_fusion_run.stats.fused_steps


def test_region_axes_and_the_method_axis(webui):
    webui.build_ui()
    boxes = [{"box": [0, 0, 0.5, 1]}]
    regions = snb(method="regions", regions=boxes, window=8, stride=4)
    cells = xyz_grid.run(webui.processing(regions, steps=2, width=128), "[Fusion] Stride", ["2", "8"])
    assert [pc.model_fusion_run.args.stride for pc, _ in cells] == [2, 8]
    passes = [pc.model_fusion_run.stats.region_passes for pc, _ in cells]
    assert passes[0] > passes[1]  # 5 views across the 16-wide latent at stride 2, 2 at stride 8
    cells = xyz_grid.run(webui.processing(regions, steps=2), "[Fusion] Method", ["snb", "regions"])
    assert [pc.model_fusion_run.stats.kinds[0] for pc, _ in cells] == ["fused", "regions"]
    cells = xyz_grid.run(webui.processing(regions, steps=2, width=128), "[Fusion] Stride", ["auto", "8"])
    assert [pc.model_fusion_run.args.stride for pc, _ in cells] == ["auto", 8]
    cells = xyz_grid.run(webui.processing(regions, steps=2, width=256), "[Fusion] Windows", ["overlap", "shifted"])
    assert [pc.model_fusion_run.args.windows for pc, _ in cells] == ["overlap", "shifted"]
    passes = [pc.model_fusion_run.stats.region_passes for pc, _ in cells]
    assert passes[0] > passes[1]  # stride 4 over the 32-wide latent: 7 views a step; shifted: 4 or 5
    for label, values, field in [
        ("[Fusion] Bootstrapping", ["0.5"], 0.5),
        ("[Fusion] Window", ["16"], 16),
        ("[Fusion] View batch size", ["1"], 1),
    ]:
        ((pc, _),) = xyz_grid.run(webui.processing(regions, steps=2), label, values)
        assert field in pc.model_fusion_run.args.dict().values()


def test_a_cell_with_fusion_off_does_not_inherit_another_cells_infotext(webui):
    p = webui.processing(snb(), steps=2)
    on, off = copy(p), copy(p)
    off.model_fusion_overrides = {"enabled": False}
    assert on.extra_generation_params is off.extra_generation_params  # shared, as in the plot's cells
    fused, plain = processing.process_images(on), processing.process_images(off)
    assert "Fusion model:" in fused.infotexts[0] and "Fusion" not in plain.infotexts[0]


def test_other_axes_keep_working_with_fusion(webui):
    webui.build_ui()
    cells = xyz_grid.run(webui.processing(snb(), steps=3), "Seed", ["1", "2"])
    assert [pc.seed for pc, _ in cells] == [1, 2]
    assert all(pc.model_fusion_run.stats.fused_steps > 0 for pc, _ in cells)


def test_a_bad_axis_value_fails_its_cell_with_a_named_error(webui):
    webui.build_ui()
    with pytest.raises(ValueError, match="kg=-1 must be in"):
        xyz_grid.run(webui.processing(snb(), steps=2), "[Fusion] kg", ["-1"])


def test_a_second_checkpoint_axis_sweeps_the_first_further_fusion_checkpoint(webui):
    from modules import shared

    shared.opts.model_fusion_max_models = 2
    webui.build_ui()
    p = webui.processing(snb(models='[{"model": "expert", "k": 2}]'), steps=3)  # the UI's JSON; the axis keeps k
    cells = xyz_grid.run(p, "[Fusion] Checkpoint 2", ["artist", "artist.safetensors"])
    runs = [pc.model_fusion_run for pc, _ in cells]
    assert [[(entry.model, entry.k) for entry in run.args.models] for run in runs] == [[(webui.title("artist"), 2.0)]] * 2
    assert all(run.stats.more_runs == {webui.title("artist"): run.stats.fused_steps} for run in runs)
    assert all("Fusion models: " in text and webui.title("artist") in text for text in (processed.infotexts[0] for _, processed in cells))
    with pytest.raises(ValueError, match="the Checkpoint 3 axis needs a Checkpoint 2"):
        xyz_grid.run(webui.processing(snb(), steps=2), "[Fusion] Checkpoint 3", ["artist"])
