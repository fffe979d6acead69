"""The configuration: sections, presets, the resolver every front end calls, its files and
its errors, and the configurations of earlier versions."""

from __future__ import annotations

import dataclasses

import pytest

from napari_xview.config import (
    DEFAULT_PRESET,
    FIELD_SECTIONS,
    PRESETS,
    SECTIONS,
    Config,
    ModelConfig,
    RuntimeConfig,
    option_help,
    resolve,
)
from napari_xview.config.fields import field_names


def test_every_option_has_one_name_and_a_description():
    names = [name for cls in SECTIONS.values() for name in field_names(cls)]
    assert len(names) == len(set(names)) == len(FIELD_SECTIONS)
    for section, cls in SECTIONS.items():
        for name in field_names(cls):
            assert len(option_help(cls, name)) > 20, f"{section}.{name} has no description"
    # an entry naming several fields describes each of them
    assert option_help(ModelConfig, "pint_groups") == option_help(ModelConfig, "pint_blocks")


def test_the_bare_defaults_are_the_default_preset_and_every_preset_is_whole():
    assert Config() == PRESETS[DEFAULT_PRESET] == resolve()
    for name, config in PRESETS.items():
        assert config.preset == name and config.factor == 4
        assert set(config.flat()) == {f"{FIELD_SECTIONS[n]}.{n}" for n in FIELD_SECTIONS}
        assert resolve(name, 3).factor == 3


def test_the_paper_preset_is_sections_3_and_4_as_written():
    paper = resolve("paper", 4)
    assert paper.model.networks == "both" and not paper.model.residual_to_linear
    assert (paper.model.sint_channels, paper.model.sint_blocks, paper.model.memory_items,
            paper.model.pint_channels, paper.model.pint_groups, paper.model.pint_blocks) == (
        192, 12, 10, 64, 10, 20)
    assert paper.objective.recipe == "downsampled" and paper.objective.gamma == 0.4
    assert paper.objective.n_incremental == 2 and not paper.objective.cmd_skip_copied
    assert (paper.objective.weight_cmd, paper.objective.weight_memory) == (0.15, 0.1)
    assert (paper.optimisation.lr, paper.optimisation.lr_decay, paper.optimisation.batch_size,
            paper.optimisation.grad_clip) == (1e-4, 0.1, 4, None)
    assert (paper.data.crop_slices, paper.data.patch_size, paper.data.central_size,
            paper.data.degradation, paper.data.pint_lines) == (15, 128, 256, "direct", None)


def test_options_by_dotted_key_by_name_as_text_or_nested():
    config = resolve("lite", 2, {"optimisation.lr": "3e-3", "gamma": 0.2,
                                 "data": {"central_size": "none"}, "window": "-1000, 2000",
                                 "use_wavelet": "false", "recipe": '"inplane"'})
    assert config.factor == 2 and config.optimisation.lr == 3e-3
    assert config.objective.gamma == 0.2 and config.data.central_size is None
    assert config.model.window == (-1000.0, 2000.0) and config.ablation.use_wavelet is False
    assert config.objective.recipe == "inplane" and config.preset == "lite"
    # the other options keep the preset's values
    assert config.replace(gamma=0.4, lr=3e-4, central_size=256, window=(-1024.0, 3072.0),
                          use_wavelet=True, recipe="inplane-only") == resolve("lite", 2)


@pytest.mark.parametrize(("options", "message"), [
    ({"lrr": 1}, r"unknown option 'lrr' \(did you mean optimisation\.lr\?\)"),
    ({"optim.lr": 1}, "unknown section 'optim'.*model, data, objective"),
    ({"data.lr": 1}, r"'data' has no option 'lr' \(it is optimisation\.lr\)"),
    ({"lr": "fast"}, r"optimisation\.lr must be a number, got 'fast'"),
    ({"steps": 0}, r"optimisation\.steps must be at least 1 or none"),
    ({"steps": 2.5}, r"optimisation\.steps must be an integer"),
    ({"recipe": "mine"}, r"objective\.recipe must be one of"),
    ({"gamma": 0}, r"objective\.gamma must be more than 0"),
    ({"factor": 9}, r"model\.factor must be one of"),
    ({"patch_size": 300}, r"central_size \(256\) must be at least data\.patch_size"),
    ({"steps": 3, "minutes": 1.0}, "in steps or in minutes, not both"),
    ({"amp": "maybe"}, r"runtime\.amp must be true or false"),
])
def test_bad_options_are_named_with_the_way_out(options, message):
    with pytest.raises(ValueError, match=message):
        resolve("paper", 4, options)


def test_an_unknown_preset_names_the_presets():
    with pytest.raises(ValueError, match="unknown preset 'fast': choose one of pixelwise"):
        resolve("fast")


def test_a_checkpoint_keeps_every_section_but_runtime():
    config = resolve("distill", 3, {"lr": 2e-4, "device": "cpu", "num_threads": 1})
    saved = config.to_dict()
    assert set(saved) == {"preset", *SECTIONS} - {"runtime"}
    assert Config.from_dict(saved) == dataclasses.replace(config, runtime=RuntimeConfig())
    assert Config.from_dict(saved, config.runtime) == config


def test_configurations_of_earlier_versions_are_read():
    # a flat training configuration with the names and values of before the sections
    old = {"steps": 10, "lr": 3e-4, "recipe": "paper", "central_size": None, "extra": {},
           "device": "cpu", "num_threads": 2}
    config = Config.from_dict(old)
    assert config.optimisation.steps == 10 and config.optimisation.lr == 3e-4
    assert config.objective.recipe == "downsampled" and config.data.central_size is None
    assert config.runtime == RuntimeConfig()  # the session's, not the file's
    from napari_xview.config import upgrade_model_dict

    sizes, preset = upgrade_model_dict({"factor": 2, "preset": "lite", "views": "pixelwise"})
    assert preset == "lite" and ModelConfig.from_dict(sizes).networks == "pint"


def test_a_resumed_run_changes_only_its_runtime_and_its_budget():
    config = resolve("lite", 2, {"minutes": 5.0})
    resumed = config.resumed({"device": "cpu", "num_threads": 1, "steps": 40,
                              "gamma": config.objective.gamma})  # the same gamma: accepted
    assert resumed.runtime.device == "cpu" and resumed.runtime.num_threads == 1
    assert resumed.optimisation.steps == 40 and resumed.optimisation.minutes is None
    assert resumed.replace(steps=None, minutes=5.0, device="auto", num_threads=None) == config
    with pytest.raises(ValueError, match=r"objective\.gamma cannot change.*--init"):
        config.resumed({"objective.gamma": 0.2})


def test_a_toml_file_gives_the_preset_the_factor_and_the_options(tmp_path):
    from napari_xview.cli.parser import build_parser, config_from

    path = tmp_path / "run.toml"
    path.write_text('preset = "lite"\nfactor = 3\n[optimisation]\nlr = 2e-4\nminutes = 7\n'
                    '[data]\ncentral_size = 192\n')
    args = build_parser().parse_args(["train", "scan.nii.gz", "--config", str(path),
                                      "--set", "gamma=0.3", "--seed", "5", "-o", "m.pt"])
    assert config_from(args) == resolve("lite", 3, {"lr": 2e-4, "minutes": 7.0,
                                                    "central_size": 192, "gamma": 0.3,
                                                    "seed": 5})
    # the command line's own options win over the file's
    args = build_parser().parse_args(["train", "scan.nii.gz", "--config", str(path),
                                      "--preset", "paper", "--lr", "1e-3", "-o", "m.pt"])
    assert config_from(args) == resolve("paper", 3, {"lr": 1e-3, "minutes": 7.0,
                                                     "central_size": 192})
    path.write_text("lr = [")
    with pytest.raises(ValueError, match="is not a valid TOML file"):
        config_from(build_parser().parse_args(["train", "s.nii", "--config", str(path),
                                               "-o", "m.pt"]))


@pytest.mark.parametrize("preset", list(PRESETS))
def test_every_preset_resolves_alike_from_the_command_line_and_the_api(preset):
    from napari_xview.cli.parser import build_parser, config_from

    for command in (["train", "scan.nii.gz", "-o", "m.pt"], ["run", "scan.nii.gz", "-o", "o.nii"],
                    ["evaluate", "scan.nii.gz"]):
        args = build_parser().parse_args([*command, "--preset", preset, "--factor", "3",
                                          "--steps", "5", "--device", "cpu"])
        assert config_from(args) == resolve(preset, 3, {"steps": 5, "device": "cpu"})


def test_the_options_command_lists_every_option(capsys):
    from napari_xview import cli

    assert cli.main(["options", "--preset", "paper", "--set", "lr=2e-4"]) == 0
    out = capsys.readouterr().out
    for key, value in resolve("paper", 4, {"lr": 2e-4}).flat().items():
        shown = "none" if value is None else value
        assert f"{key} = {shown}\n" in out
