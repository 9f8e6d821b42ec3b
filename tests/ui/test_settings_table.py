"""The training settings table (core/train/settings.py) drives TrainConfig, the app's widgets, its saved
settings and the command line; these tests check that all four agree for every setting in it."""
from __future__ import annotations

import dataclasses

import pytest

from resnet_app.cli import build_parser
from resnet_app.core.train.settings import TrainConfig, train_settings
from resnet_app.ui.settings import Settings
from resnet_app.ui.settings_form import SettingsForm


def sample_values(spec) -> list:
    """Values worth a round trip: the default, every choice, the ends of the range, automatic."""
    values = [spec.default] + list(spec.choices)
    if spec.kind is bool:
        values += [True, False]
    if spec.kind in (int, float):
        values += [v for v in (spec.minimum, spec.maximum) if v is not None]
        if spec.kind is float and spec.minimum is not None and spec.maximum is not None:
            values.append(round((spec.minimum + spec.maximum) / 2, 2))
    if spec.has_automatic:
        values.append(spec.automatic_value)
    return [spec.coerce(v) if v is not None else v for v in values]


def test_every_setting_is_a_train_config_field_with_the_tables_default():
    defaults = TrainConfig()
    names = [f.name for f in dataclasses.fields(TrainConfig)]
    assert [spec.name for spec in train_settings()] == names
    for spec in train_settings():
        assert getattr(defaults, spec.name) == spec.default
        assert spec.problem(spec.default) is None, spec.name
        assert spec.label and spec.help, spec.name


def test_command_line_options_parse_every_value_as_the_table_does():
    parser = build_parser()
    for spec in (s for s in train_settings() if s.on_cli):
        untouched = parser.parse_args(["train", "data"])
        assert getattr(untouched, spec.name) is None  # not given: TrainConfig's default applies
        if spec.kind is bool:  # both spellings, whatever the default
            flag = spec.cli_flags[0]
            assert getattr(parser.parse_args(["train", "data", flag]), spec.name) is True
            assert getattr(parser.parse_args(["train", "data", flag.replace("--", "--no-", 1)]), spec.name) is False
            continue
        for value in sample_values(spec):
            if value is None:
                continue
            text = "auto" if spec.is_automatic(value) else str(value)
            parsed = parser.parse_args(["train", "data", spec.cli_flags[0], text])
            assert getattr(parsed, spec.name) == value, (spec.name, text)


def test_train_help_names_every_option_with_its_default():
    parser = build_parser()
    train = parser._subparsers._group_actions[0].choices["train"]  # argparse has no public getter
    text = train.format_help()
    for spec in (s for s in train_settings() if s.on_cli):
        assert spec.cli_flags[0] in text
    assert "(default: 0.2)" in text and "(default: auto)" in text


def test_command_line_refuses_values_outside_the_table(capsys):
    parser = build_parser()
    for argv, message in ((["--epochs", "0"], "epochs must be at least 1"),
                          (["--optimizer", "rmsprop"], "optimizer must be one of adam, sgd"),
                          (["--batch-size", "big"], "batch size must be a whole number")):
        with pytest.raises(SystemExit):
            parser.parse_args(["train", "data", *argv])
        assert message in capsys.readouterr().err


def test_widgets_show_and_return_every_value(qtbot):
    form = SettingsForm()
    qtbot.addWidget(form)
    shown = [spec for spec in train_settings() if spec.in_app]
    assert set(form.editors) == {spec.name for spec in shown}
    assert form.values() == {spec.name: spec.default for spec in shown}  # a new form shows the defaults
    for spec in shown:
        editor = form.editor(spec.name)
        assert editor.toolTip() and editor.accessibleName() == spec.label
        for value in sample_values(spec):
            editor.set_setting_value(value)
            assert editor.setting_value() == value, (spec.name, value)


def test_saved_settings_round_trip_through_qsettings(qtbot):
    first = SettingsForm()
    qtbot.addWidget(first)
    changed = {"epochs": 37, "batch_size": 64, "lr": 0.003, "image_size": 48, "val_fraction": 0.3,
               "optimizer": "sgd", "schedule": "cosine", "augment": False, "seed": 5}
    first.set_values(changed)
    first.save(Settings())
    second = SettingsForm()
    qtbot.addWidget(second)
    second.load(Settings())
    assert second.values() == first.values()
    assert second.config() == TrainConfig(**{**first.values()})


def test_a_damaged_saved_setting_falls_back_to_its_default(qtbot, temp_settings):
    settings = Settings()
    settings.set("train/epochs", 12)
    settings.sync()
    ini = next(temp_settings.rglob("*.ini"))
    ini.write_text(ini.read_text().replace("epochs=12", "epochs=lots").replace(
        "[General]", "[General]\ntrain\\batch_size=0"))  # 0 was 'auto' in an older version
    fresh = Settings()
    assert fresh.get("train/epochs") == 10
    assert fresh.get("train/batch_size") == "auto"
