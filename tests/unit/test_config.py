"""Config: defaults load, overrides apply, bad values fail before work with the key and the fix."""

from pathlib import Path

import pytest

from aworld_core.config import RecipeConfig, load_config, parse_overrides
from aworld_core.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


def test_local_yaml_is_valid_and_matches_defaults_where_unset():
    cfg = load_config(REPO / "configs" / "local.yaml")
    assert cfg.iterations == 2
    assert cfg.serve.mode == "local"
    assert cfg.rollout.samples_per_prompt == 8
    assert cfg.train.backend == "torch"


def test_cluster_yaml_is_valid():
    cfg = load_config(REPO / "configs" / "cluster.yaml")
    assert cfg.serve.mode == "external" and len(cfg.serve.endpoints) >= 2
    assert cfg.dask.address.startswith("tcp://")
    assert cfg.storage.uri.startswith("s3://")


def test_overrides_are_yaml_typed_and_nested():
    cfg = load_config(None, ["rollout.shards=8", "serve.endpoints=[http://a:1/v1, http://b:2/v1]",
                             "serve.mode=external", "agent.temperature=0.5", "env.params.tool_latency_s=[0.2, 1.0]"])
    assert cfg.rollout.shards == 8
    assert cfg.serve.endpoints == ["http://a:1/v1", "http://b:2/v1"]
    assert cfg.agent.temperature == 0.5
    assert cfg.env.params["tool_latency_s"] == [0.2, 1.0]


@pytest.mark.parametrize("override, key", [
    ("rollout.shards=0", "rollout.shards"),
    ("rollout.shrads=3", "rollout.shrads"),
    ("agent.temperature=hot", "agent.temperature"),
    ("serve.port=80", "serve.port"),
    ("run_id=../etc", "run_id"),
])
def test_bad_values_name_the_key(override, key):
    with pytest.raises(ConfigError) as exc:
        load_config(None, [override])
    assert key in str(exc.value)


def test_unknown_key_says_check_spelling():
    with pytest.raises(ConfigError, match="unknown key"):
        load_config(None, ["rollout.shrads=3"])


def test_external_mode_needs_endpoints():
    with pytest.raises(ConfigError, match="serve.endpoints"):
        load_config(None, ["serve.mode=external"])


def test_endpoint_must_be_http():
    with pytest.raises(ConfigError, match="http"):
        load_config(None, ["serve.mode=external", "serve.endpoints=[ftp://x]"])


@pytest.mark.parametrize("bad", ["noequals", "=3", "a..b=1", "x=[unclosed"])
def test_malformed_overrides(bad):
    with pytest.raises(ConfigError):
        parse_overrides([bad])


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    p = tmp_path / "bad.yaml"
    p.write_text("rollout: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(p)
    p.write_text("- a list\n- not a mapping\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(p)


def test_run_id_generated_once():
    cfg = RecipeConfig().with_run_id()
    assert cfg.run_id and cfg.with_run_id().run_id == cfg.run_id
