"""Where the engine keeps its files and how it reads ``config.json``: strictly, naming what to fix."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gouache.engine.settings import DEFAULT_CACHE_BYTES, Settings, user_data_dir


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


def write_config(home: Path, config: object) -> Path:
    home.mkdir(parents=True, exist_ok=True)
    path = home / "config.json"
    path.write_text(json.dumps(config))
    return path


def problems(home: Path) -> str:
    with pytest.raises(ValueError) as raised:
        Settings.load(home)
    return str(raised.value)


# The default base directory ------------------------------------------------------------------------

@pytest.mark.parametrize("xdg", [None, "/srv/xdg-data", "relative/is-ignored"])
def test_the_default_home_is_the_folder_platformdirs_names(monkeypatch, xdg):
    platformdirs = pytest.importorskip("platformdirs")
    if xdg is None:
        monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    else:
        monkeypatch.setenv("XDG_DATA_HOME", xdg)
    assert user_data_dir() == Path(platformdirs.user_data_dir("gouache"))


def test_on_macos_the_home_is_under_application_support(monkeypatch):
    platformdirs_macos = pytest.importorskip("platformdirs.macos")
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    monkeypatch.setattr(sys, "platform", "darwin")
    expected = Path(os.path.expanduser("~/Library/Application Support/gouache"))
    assert user_data_dir() == expected == Path(platformdirs_macos.MacOS("gouache").user_data_dir)


def test_on_windows_the_home_is_under_local_app_data(monkeypatch):
    monkeypatch.setattr(sys, "platform", "win32")
    monkeypatch.setenv("LOCALAPPDATA", r"C:\Users\ada\AppData\Local")
    # platformdirs nests the app in a folder named after its author, which defaults to the app.
    assert user_data_dir() == Path(r"C:\Users\ada\AppData\Local", "gouache", "gouache")


def test_an_engine_without_arguments_lives_in_the_user_data_folder(tmp_path):
    env = {key: value for key, value in os.environ.items() if key != "GOUACHE_HOME"}
    env.update(XDG_DATA_HOME=str(tmp_path / "data"), GOUACHE_PACKS_BLOCK="builtin")
    script = "from gouache.engine import Engine; print(Engine().settings.home)"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True)
    assert Path(done.stdout.strip()) == (tmp_path / "data" / "gouache").resolve()


def test_gouache_home_and_an_explicit_home_win_over_the_user_data_folder(monkeypatch, tmp_path):
    monkeypatch.setenv("GOUACHE_HOME", str(tmp_path / "from-env"))
    assert Settings.load().home == (tmp_path / "from-env").resolve()
    assert Settings.load(tmp_path / "given").home == (tmp_path / "given").resolve()


# config.json ----------------------------------------------------------------------------------------

def test_no_config_file_gives_the_defaults(home):
    settings = Settings.load(home)
    assert (settings.device, settings.cache_bytes, settings.memory_budget_bytes) == ("auto", DEFAULT_CACHE_BYTES, None)
    assert settings.extra_model_roots == () and settings.model_dirs == {}


def test_every_key_of_a_config_file_is_read(home, tmp_path):
    write_config(home, {"device": "cuda:1", "cache_bytes": 1234, "memory_budget_bytes": 5678,
                        "extra_model_roots": ["~/other-tool/models"],
                        "model_dirs": {"checkpoints": [str(tmp_path / "sd")]}})
    settings = Settings.load(home)
    assert (settings.device, settings.cache_bytes, settings.memory_budget_bytes) == ("cuda:1", 1234, 5678)
    assert settings.extra_model_roots == (Path("~/other-tool/models").expanduser(),)
    assert settings.model_dirs == {"checkpoints": (tmp_path / "sd",)}


def test_overrides_win_over_the_config_file(home):
    write_config(home, {"device": "cpu", "cache_bytes": 10})
    settings = Settings.load(home, device="cuda", cache_bytes=None)
    assert (settings.device, settings.cache_bytes) == ("cuda", 10)


def test_a_misspelt_key_is_refused_with_the_file_the_key_and_a_suggestion(home):
    path = write_config(home, {"cache_byte": 1000})
    message = problems(home)
    assert str(path.resolve()) in message
    assert "unknown key 'cache_byte': did you mean 'cache_bytes'?" in message
    assert ("known keys are device, cache_bytes, cache_device_bytes, disk_cache_bytes, model_cache_bytes, "
            "memory_budget_bytes, extra_model_roots, model_dirs") in message


def test_an_unknown_key_nothing_resembles_lists_the_known_keys_without_a_guess(home):
    write_config(home, {"colour": "blue"})
    message = problems(home)
    assert "unknown key 'colour': known keys are device," in message and "did you mean" not in message


def test_wrong_types_are_all_named_at_once_with_the_value_found(home):
    write_config(home, {"cache_bytes": "lots", "device": 3, "memory_budget_bytes": True,
                        "extra_model_roots": "/models", "model_dirs": {"loras": [1]}})
    message = problems(home)
    assert "(5 problems)" in message
    assert "key 'cache_bytes' must be a valid integer, unable to parse string as an integer (found 'lots')" in message
    assert "key 'device' must be a valid string (found 3)" in message
    assert "key 'memory_budget_bytes' must be a number of bytes, not true (found True)" in message
    assert "key 'extra_model_roots' must be a valid list (found '/models')" in message
    assert "key 'model_dirs.loras.0' must be a valid string (found 1)" in message


def test_a_negative_byte_count_is_refused(home):
    write_config(home, {"cache_bytes": -1})
    assert "key 'cache_bytes' must be greater than or equal to 0 (found -1)" in problems(home)


def test_a_config_file_that_is_not_an_object_or_not_json_is_refused(home):
    write_config(home, ["cache_bytes", 5])
    assert "must hold a JSON object of settings, not list" in problems(home)
    (home / "config.json").write_text("{cache_bytes: 5}")
    assert "config.json is not valid JSON" in problems(home)


# byte budgets -------------------------------------------------------------------------------------

def test_the_default_budgets_follow_the_machine_s_ram():
    from gouache.engine.settings import DEFAULT_MODEL_CACHE_BYTES, GiB, physical_memory_bytes

    ram = physical_memory_bytes()
    if ram is None:  # no os.sysconf (Windows): fixed fallbacks
        assert (DEFAULT_CACHE_BYTES, DEFAULT_MODEL_CACHE_BYTES) == (2 * GiB, 8 * GiB)
        return
    assert ram == os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    assert DEFAULT_CACHE_BYTES == min(ram // 8, 8 * GiB)
    assert DEFAULT_MODEL_CACHE_BYTES == ram // 2


def test_the_budgets_are_read_from_the_config_file(home):
    write_config(home, {"cache_bytes": 1, "cache_device_bytes": 2, "disk_cache_bytes": 3, "model_cache_bytes": 4})
    settings = Settings.load(home)
    assert (settings.cache_bytes, settings.cache_device_bytes, settings.disk_cache_bytes,
            settings.model_cache_bytes) == (1, 2, 3, 4)
    assert settings.cache_dir == home.resolve() / "cache"
    write_config(home, {"disk_cache_bytes": True, "model_cache_bytes": -5})
    message = problems(home)
    assert "key 'disk_cache_bytes' must be a number of bytes, not true" in message
    assert "key 'model_cache_bytes' must be greater than or equal to 0" in message
