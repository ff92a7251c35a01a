"""The only code that touches the WebUI's internals (``modules.*``), split by concern:

- :mod:`.probe`: what this WebUI offers (its modules, its host family), asked when needed;
- :mod:`.checkpoints`: listing, lookup, the family check, the active model's config;
- :mod:`.loading`: the fusion checkpoint in memory (build, cache, memory policy, wrappers);
- :mod:`.settings`: the Settings section and the values read from it;
- :mod:`.generation`: one generation from ``process`` to ``postprocess``;
- :mod:`.sampling`: around every host's sampling hook (``p.sample``, conditionings);
- :mod:`.a1111`: how AUTOMATIC1111 1.10.x calls the fusion while it samples;
- :mod:`.forge`, :mod:`.forge_loading`: how Forge calls it, and its fusion checkpoint;
- :mod:`.images`: the comparison and previews added to the WebUI's output;
- :mod:`.schedules`: the timesteps a sampler will step through (the accordion's schedule label).

``scripts/``, the UI and the routes use the names below.
"""

from lib_fusion.host.checkpoints import (
    active_title,
    api_access,
    checkpoint_report,
    checkpoint_titles,
    fusable_titles,
    is_active_checkpoint,
    model_window,
    refresh_checkpoints,
    resolve_checkpoint,
    xyz_grid_module,
)
from lib_fusion.host.generation import begin_pass, finish, start, start_with_error
from lib_fusion.host.images import RUN_ATTRIBUTE, keep_result
from lib_fusion.host.loading import FusionModel, load_fusion_model, loaded_report, unload
from lib_fusion.host.probe import HostError, unsupported_host
from lib_fusion.host.schedules import step_timesteps
from lib_fusion.host.settings import (
    DEFAULT_MODE,
    DEFAULT_MODEL,
    DEFAULT_SELECTION,
    KEEP_LOADED,
    PREVIEW_STEPS,
    SECTION,
    add_settings,
    preview_steps,
    setting,
    ui_defaults,
)

__all__ = [
    "DEFAULT_MODE",
    "DEFAULT_MODEL",
    "DEFAULT_SELECTION",
    "KEEP_LOADED",
    "PREVIEW_STEPS",
    "RUN_ATTRIBUTE",
    "SECTION",
    "FusionModel",
    "HostError",
    "active_title",
    "add_settings",
    "api_access",
    "begin_pass",
    "checkpoint_report",
    "checkpoint_titles",
    "finish",
    "fusable_titles",
    "is_active_checkpoint",
    "keep_result",
    "load_fusion_model",
    "loaded_report",
    "model_window",
    "preview_steps",
    "refresh_checkpoints",
    "resolve_checkpoint",
    "setting",
    "start",
    "start_with_error",
    "step_timesteps",
    "ui_defaults",
    "unload",
    "unsupported_host",
    "xyz_grid_module",
]
