"""Loading deployments from a LiteLLM-shaped config.yaml or from env alone."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr

from batchyard.config import Settings
from batchyard.deployments import DeploymentRegistry, load_deployments
from batchyard.errors import ConfigError

BRIEF_CONFIG = """
model_list:
  - model_name: "batch-gpt-4o-mini"
    litellm_params:
      model: "azure/gpt-4o-mini"
      api_key: os.environ/BY_TEST_AZURE_KEY
      api_base: os.environ/BY_TEST_AZURE_BASE
    model_info:
      mode: batch
litellm_settings:
  enable_loadbalancing_on_batch_endpoints: true
"""


def settings_for(tmp_path: Path, text: str | None, **env: str) -> Settings:
    """Settings with no ambient provider env (explicit Nones win over the environment)."""
    config = None
    if text is not None:
        config = tmp_path / "config.yaml"
        config.write_text(text)
    values: dict[str, object] = {"openai_api_key": None, "openai_api_base": None,
                                 "azure_api_key": None, "azure_api_base": None,
                                 "azure_api_version": None, "anthropic_api_key": None,
                                 "anthropic_api_base": None, "config_file": config}
    values.update(env)
    return Settings(**values)


@pytest.fixture()
def azure_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BY_TEST_AZURE_KEY", "azure-secret-key")
    monkeypatch.setenv("BY_TEST_AZURE_BASE", "https://east.example.invalid")


@pytest.mark.usefixtures("azure_env")
def test_the_briefs_config_gives_one_azure_batch_deployment(tmp_path: Path) -> None:
    registry = load_deployments(settings_for(tmp_path, BRIEF_CONFIG))
    [only] = registry.all()
    assert (only.model_name, only.provider, only.model) == ("batch-gpt-4o-mini", "azure",
                                                              "gpt-4o-mini")
    assert only.api_base == "https://east.example.invalid"
    assert only.api_key is not None and only.api_key.get_secret_value() == "azure-secret-key"
    assert registry.for_model("batch-gpt-4o-mini") == [only]
    assert registry.strategy == "least_loaded"


@pytest.mark.usefixtures("azure_env")
def test_quota_weight_id_and_strategy_are_read(tmp_path: Path) -> None:
    text = """
model_list:
  - model_name: g
    litellm_params: {model: azure/dep-a, api_key: os.environ/BY_TEST_AZURE_KEY,
                     api_base: https://a.example.invalid, api_version: "2024-10-21"}
    model_info: {id: east, enqueued_token_quota: 1000, weight: 2}
  - model_name: g
    litellm_params: {model: azure/dep-b, api_base: https://b.example.invalid, weight: 3}
    model_info: {max_enqueued_tokens: 5000}
  - model_name: chat-only
    litellm_params: {model: openai/gpt-4o, api_key: sk-inline}
    model_info: {mode: chat}
batchyard_settings: {batch_routing_strategy: round_robin}
"""
    registry = load_deployments(settings_for(tmp_path, text,
                                             azure_api_key=SecretStr("from-settings")))
    east, second, chat = registry.all()
    assert (east.id, east.enqueued_token_quota, east.weight, east.api_version) == (
        "east", 1000, 2.0, "2024-10-21")
    assert (second.enqueued_token_quota, second.weight) == (5000, 3.0)
    assert second.api_key is not None and second.api_key.get_secret_value() == "from-settings"
    assert second.id.startswith("azure-dep-b-")
    assert registry.strategy == "round_robin"
    assert [d.id for d in registry.for_model("g")] == ["east", second.id]
    assert chat.mode == "chat" and registry.for_model("chat-only") == []
    assert registry.get("east") is east


def test_derived_ids_are_stable_across_loads(tmp_path: Path) -> None:
    text = "model_list:\n  - model_name: g\n    litellm_params: {model: openai/gpt-4o-mini}\n"
    first = load_deployments(settings_for(tmp_path, text)).all()[0].id
    second = load_deployments(settings_for(tmp_path, text)).all()[0].id
    assert first == second


def test_router_settings_strategy_uses_litellm_names(tmp_path: Path) -> None:
    text = "model_list: []\nrouter_settings: {routing_strategy: simple-shuffle}\n"
    assert load_deployments(settings_for(tmp_path, text)).strategy == "weighted"


def test_env_alone_gives_openai_and_azure_catch_alls(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, None, openai_api_key=SecretStr("sk-o"),
                            openai_api_base="http://127.0.0.1:1/v1",
                            azure_api_key=SecretStr("az"), azure_api_base="http://az",
                            azure_api_version="2024-10-21")
    registry = load_deployments(settings)
    assert [(d.id, d.provider, d.model) for d in registry.all()] == [
        ("openai", "openai", ""), ("azure", "azure", "")]
    assert [d.id for d in registry.for_model("gpt-4o-mini")] == ["openai"]
    assert [d.id for d in registry.for_model(None, provider="azure")] == ["azure"]
    assert registry.get("azure").api_version == "2024-10-21"
    assert not registry.get("openai").rewrites_model


def test_azure_env_needs_a_base(tmp_path: Path) -> None:
    registry = load_deployments(settings_for(tmp_path, None, azure_api_key=SecretStr("az")))
    assert registry.all() == []


@pytest.mark.usefixtures("azure_env")
def test_a_jsonl_model_naming_an_azure_deployment_finds_it(tmp_path: Path) -> None:
    registry = load_deployments(settings_for(tmp_path, BRIEF_CONFIG,
                                             openai_api_key=SecretStr("sk-o")))
    assert [d.model for d in registry.for_model("gpt-4o-mini", provider="azure")] == [
        "gpt-4o-mini"]
    assert [d.id for d in registry.for_model("something-else")] == ["openai"]
    assert registry.for_model("something-else", provider="azure") == []
    # Without a provider forced, the OpenAI catch-all wins over a same-named Azure deployment.
    assert [d.id for d in registry.for_model("gpt-4o-mini")] == ["openai"]


@pytest.mark.usefixtures("azure_env")
def test_registry_repr_and_describe_hide_secrets(tmp_path: Path) -> None:
    registry: DeploymentRegistry = load_deployments(settings_for(tmp_path, BRIEF_CONFIG))
    assert "azure-secret-key" not in repr(registry)
    assert "azure-secret-key" not in repr(registry.all())
    assert "azure-secret-key" not in str(registry.describe())


@pytest.mark.parametrize(("text", "message"), [
    ("model_list:\n  - model_name: g\n    litellm_params: {model: openai/x, "
     "api_key: os.environ/BY_TEST_SURELY_UNSET}\n",
     r"model_list\[0\] \(model_name='g'\).*BY_TEST_SURELY_UNSET"),
    ("model_list:\n  - model_name: g\n    litellm_params: {model: bedrock/x}\n",
     r"model_list\[0\] \(model_name='g'\).*unknown provider 'bedrock'"),
    ("model_list:\n  - model_name: g\n    litellm_params: {model: gpt-4o}\n",
     r"model_list\[0\].*azure/<deployment>"),
    ("model_list:\n  - litellm_params: {model: openai/x}\n",
     r"model_list\[0\]: model_name is missing"),
    ("model_list:\n  - model_name: a\n    litellm_params: {model: openai/x}\n"
     "    model_info: {id: same}\n  - model_name: b\n    litellm_params: {model: openai/y}\n"
     "    model_info: {id: same}\n",
     r"model_list\[1\] \(model_name='b'\): duplicate deployment id 'same'"),
    ("model_list:\n  - model_name: g\n    litellm_params: {model: azure/x}\n",
     r"model_list\[0\].*api_base"),
    ("model_list:\n  - model_name: g\n    litellm_params: {model: openai/x}\n"
     "    model_info: {enqueued_token_quota: lots}\n", r"model_list\[0\].*positive integer"),
    ("model_list: [unclosed\n", r"not valid YAML"),
    ("batchyard_settings: {batch_routing_strategy: fastest}\n", r"unknown routing strategy"),
])
def test_a_bad_config_names_the_entry(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_deployments(settings_for(tmp_path, text))


def test_a_missing_config_file_is_a_config_error(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, None)
    settings.config_file = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_deployments(settings)


CLAUDE_CONFIG = """
model_list:
  - model_name: claude
    litellm_params: {model: anthropic/claude-sonnet-4-5, api_key: os.environ/BY_TEST_ANT_KEY}
    model_info: {id: claude-a}
  - model_name: claude
    litellm_params:
      model: anthropic/claude-sonnet-4-5
      api_base: https://claude-b.example.invalid
    model_info: {id: claude-b}
"""


def test_anthropic_models_and_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BY_TEST_ANT_KEY", "ant-secret")
    settings = settings_for(tmp_path, CLAUDE_CONFIG, anthropic_api_key=SecretStr("ant-env"),
                            anthropic_api_base="https://env.example.invalid")
    registry = load_deployments(settings)
    a, b, env = registry.all()
    assert (a.provider, a.model, a.api_base) == ("anthropic", "claude-sonnet-4-5",
                                                 "https://env.example.invalid")
    assert a.api_key is not None and a.api_key.get_secret_value() == "ant-secret"
    assert b.api_key is not None and b.api_key.get_secret_value() == "ant-env"
    assert b.api_base == "https://claude-b.example.invalid"
    assert (env.id, env.provider, env.model) == ("anthropic", "anthropic", "")
    assert [d.id for d in registry.for_model("claude")] == ["claude-a", "claude-b"]
    assert [d.id for d in registry.for_model("claude-3-haiku")] == ["anthropic"]
    assert "ant-secret" not in str(registry.describe()) + repr(registry.all())


def test_anthropic_env_alone_reads_the_usual_names(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "ant-from-env")
    monkeypatch.setenv("ANTHROPIC_API_BASE", "http://127.0.0.1:9")
    settings = Settings(openai_api_key=None, azure_api_key=None, config_file=None)
    (dep,) = load_deployments(settings).all()
    assert (dep.id, dep.api_base) == ("anthropic", "http://127.0.0.1:9")


def test_config_sections_are_checked_as_models(tmp_path: Path) -> None:
    text = ("model_list:\n  - model_name: g\n    litellm_params: [not, a, mapping]\n")
    with pytest.raises(ConfigError, match=r"model_list\[0\] \(model_name='g'\): litellm_params"):
        load_deployments(settings_for(tmp_path, text))
    with pytest.raises(ConfigError, match="router_settings"):
        load_deployments(settings_for(tmp_path, "router_settings: [1, 2]\n"))


def test_litellm_aliases_and_unknown_keys_are_accepted(tmp_path: Path) -> None:
    text = ("model_list:\n  - model_name: g\n    litellm_params: {model: openai/x, rpm: 10}\n"
            "    model_info: {id: a, max_enqueued_tokens: 500, base_model: gpt-4o, weight: 3}\n"
            "router_settings: {routing_strategy: simple-shuffle, num_retries: 2}\n"
            "general_settings: {master_key: sk-not-ours}\n")
    registry = load_deployments(settings_for(tmp_path, text))
    dep = registry.get("a")
    assert (dep.enqueued_token_quota, dep.weight) == (500, 3.0)
    assert registry.strategy != "least_loaded"
