"""Settings precedence: defaults < rag.toml < RAG_* environment < explicit overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from rag.errors import ConfigError
from rag.settings import Settings


def test_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    settings = Settings.load()
    assert settings.index_dir == Path("indexes")
    assert settings.search_mode == "hybrid"
    assert settings.embedding_model is None


def test_precedence_file_env_flag(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "rag.toml").write_text('top_k = 7\nsearch_mode = "bm25"\nrrf_k = 11\n')
    monkeypatch.setenv("RAG_TOP_K", "9")
    monkeypatch.setenv("RAG_SEARCH_MODE", "dense")
    settings = Settings.load(search_mode="hybrid")
    assert settings.rrf_k == 11  # from the file
    assert settings.top_k == 9  # the environment beats the file
    assert settings.search_mode == "hybrid"  # a flag beats both


def test_explicit_config_file(tmp_path: Path) -> None:
    config = tmp_path / "custom.toml"
    config.write_text(f'index_dir = "{tmp_path / "elsewhere"}"\n')
    assert Settings.load(config).index_dir == tmp_path / "elsewhere"


def test_none_override_keeps_lower_layers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAG_TOP_K", "3")
    assert Settings.load(top_k=None).top_k == 3


def test_bad_value_is_one_line_naming_setting_and_choices() -> None:
    with pytest.raises(
        ConfigError, match=r"search_mode: .*'dense', 'bm25' or 'hybrid'.*got 'fuzzy'"
    ):
        Settings.load(search_mode="fuzzy")


def test_bad_env_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAG_TOP_K", "many")
    with pytest.raises(ConfigError, match=r"top_k: .*integer.*got 'many'"):
        Settings.load()


def test_overlap_must_be_below_size() -> None:
    with pytest.raises(
        ConfigError, match=r"chunk_overlap \(300\) must be smaller than chunk_tokens"
    ):
        Settings.load(chunk_overlap=300, chunk_tokens=200)


def test_unknown_key_in_file_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "rag.toml"
    config.write_text("top_kk = 3\n")
    with pytest.raises(ConfigError, match="top_kk"):
        Settings.load(config)


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        Settings.load(tmp_path / "nope.toml")


def test_torch_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings.load().torch_threads is None  # torch's own default
    monkeypatch.setenv("RAG_TORCH_THREADS", "1")
    assert Settings.load().torch_threads == 1
    with pytest.raises(
        ConfigError, match=r"torch_threads: Input should be greater than or equal to 1 \(got 0\)"
    ):
        Settings.load(torch_threads=0)
