"""Properties of the config loader: whatever a user writes, the answer is a RecipeConfig or a ConfigError.

Never a pydantic ValidationError, a PyYAML ValueError or a RecursionError from deep inside; a bad value
names its dotted key; a good numeric value comes back exactly.
"""

from __future__ import annotations

from pathlib import Path

import annotated_types
import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from aworld_core.config import RecipeConfig, load_config, parse_overrides
from aworld_core.errors import ConfigError

FAST = settings(max_examples=120, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


def outcome(fn) -> RecipeConfig | ConfigError:
    """Call ``fn``; only a RecipeConfig or a ConfigError with a message are allowed out."""
    try:
        cfg = fn()
    except ConfigError as exc:
        assert type(exc) is ConfigError and str(exc).strip()
        return exc
    assert isinstance(cfg, RecipeConfig)
    assert RecipeConfig.model_validate(cfg.model_dump()) == cfg  # a loaded config is valid again
    return cfg


# ---------------------------------------------------------------- the config's own shape

def _sections(model: type[BaseModel] = RecipeConfig, prefix: str = "") -> dict[str, type[BaseModel]]:
    """Dotted path of every section ('' for the top level) -> its model."""
    out = {prefix.rstrip("."): model}
    for name, field in model.model_fields.items():
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            out.update(_sections(ann, f"{prefix}{name}."))
    return out


SECTIONS = _sections()


def _numeric_fields() -> list[tuple[str, type, dict[str, float]]]:
    """(dotted key, int|float, bounds) of every plain int/float field, bounds from its Field(ge=..)."""
    out = []
    for path, model in SECTIONS.items():
        for name, field in model.model_fields.items():
            if field.annotation not in (int, float):
                continue
            bounds = {}
            for m in field.metadata:
                for b in ("ge", "gt", "le", "lt"):
                    if isinstance(m, getattr(annotated_types, b.capitalize())):
                        bounds[b] = getattr(m, b)
            out.append((f"{path}.{name}".lstrip("."), field.annotation, bounds))
    return out


NUMERIC = _numeric_fields()
ALL_KEYS = sorted(f"{p}.{n}".lstrip(".") for p, m in SECTIONS.items() for n in m.model_fields)


def test_the_shape_walk_found_the_sections_and_numbers():
    assert {"", "rollout", "train.warm_start", "train.verl", "model.tiny"} <= set(SECTIONS)
    assert ("rollout.shards", int, {"ge": 1}) in NUMERIC
    assert len(NUMERIC) > 30


# ---------------------------------------------------------------- overrides

YAMLISH = st.sampled_from([
    "", " ", "1", "-1", "0", "1.5", "1e-3", ".nan", ".inf", "-.inf", "true", "null", "~", "[]", "{}", "[1, 2",
    "{a: 1}", "x: y", "- a", "&a [*a]", "*undefined", "!!int abc", "!!float abc", "!!timestamp 2020-99-99",
    "2020-13-45", "!!binary xyz", "!!python/object:os.system", "{? [1, 2] : 3}", "'unterminated", "\"\\x\"",
    "1" * 5000, "[" * 300, "{a: " * 100, "\t", "%YAML 1.1", "---", "...", "@", "`", "|", ">", "#", "\x00",
    "http://a:1/v1", "[http://a:1/v1]", "[ftp://x]", "external", "local", "ephemeral", "server", "../etc",
    "a" * 200, "🙂", "\ud800", "!!timestamp", "!!timestamp abc", "!!int", "!!int +", "!!int 0x", "!!int 09",
    "!!bool x", "!!bool", "!!float .", "!!float _", "!!seq {a: 1}", "!!omap x", "<<: 1", "{<<: {a: 1}}",
])
KEYS = st.sampled_from(ALL_KEYS) | st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,6}(\.[A-Za-z_][A-Za-z0-9_]{0,6}){0,3}",
                                                 fullmatch=True)
OVERRIDE = st.one_of(
    st.text(max_size=60),                                                     # anything at all
    st.builds(lambda k, v: f"{k}={v}", KEYS, YAMLISH | st.text(max_size=30)),  # key=value-shaped
    st.builds(lambda k, v: f"{k}={v}", st.sampled_from(ALL_KEYS), YAMLISH),
)


@FAST
@given(st.lists(OVERRIDE, max_size=4))
@example(["iterations=" + "1" * 5000])          # PyYAML: int() of > 4300 digits -> ValueError
@example(["iterations=" + "[" * 5000])          # RecursionError in PyYAML's composer
@example(["iterations=2020-13-45"])             # PyYAML's timestamp constructor -> ValueError
@example(["iterations=!!int abc"])
@example(["env.params.x=1", "env.params.x.y=2"])
@example(["env.params.x.y=2", "env.params=3"])
@example(["serve.mode=external"])
def test_any_overrides_give_a_config_or_a_config_error(overrides):
    outcome(lambda: load_config(None, overrides))


@FAST
@given(st.lists(OVERRIDE, max_size=4))
def test_parse_overrides_gives_a_tree_or_a_config_error(overrides):
    try:
        tree = parse_overrides(overrides)
    except ConfigError as exc:
        assert type(exc) is ConfigError and str(exc).strip()
    else:
        assert isinstance(tree, dict)


NUM = st.sampled_from(NUMERIC)


@FAST
@given(NUM, st.data())
def test_an_in_range_number_round_trips(field, data):
    key, typ, b = field
    lo = b.get("ge", b.get("gt"))
    hi = b.get("le", b.get("lt"))
    if typ is int:
        lo_i = None if lo is None else int(lo) + (1 if "gt" in b else 0)
        hi_i = None if hi is None else int(hi) - (1 if "lt" in b else 0)
        value = data.draw(st.integers(min_value=lo_i if lo_i is not None else -10**12,
                                      max_value=hi_i if hi_i is not None else 10**12))
    else:
        value = data.draw(st.floats(min_value=lo, max_value=hi, exclude_min="gt" in b, exclude_max="lt" in b,
                                    allow_nan=False, allow_infinity=False))
    cfg = load_config(None, [f"{key}={value!r}"])
    got = cfg
    for part in key.split("."):
        got = getattr(got, part)
    assert type(got) is typ and got == value


@FAST
@given(st.sampled_from([f for f in NUMERIC if "ge" in f[2] or "gt" in f[2]]), st.data())
def test_a_number_below_its_bound_is_a_config_error_naming_the_key(field, data):
    key, typ, b = field
    if "ge" in b:
        bad = (data.draw(st.integers(max_value=int(b["ge"]) - 1, min_value=-10**12)) if typ is int
               else data.draw(st.floats(max_value=b["ge"], exclude_max=True, allow_nan=False, min_value=-1e300)))
    else:
        bad = (data.draw(st.integers(max_value=int(b["gt"]), min_value=-10**12)) if typ is int
               else data.draw(st.floats(max_value=b["gt"], allow_nan=False, min_value=-1e300)))
    with pytest.raises(ConfigError) as exc:
        load_config(None, [f"{key}={bad!r}"])
    assert f"- {key}:" in str(exc.value)


@FAST
@given(st.integers(min_value=-10**6, max_value=10**6))
def test_rollout_shards(n):
    if n >= 1:
        assert load_config(None, [f"rollout.shards={n}"]).rollout.shards == n
    else:
        with pytest.raises(ConfigError, match=r"rollout\.shards"):
            load_config(None, [f"rollout.shards={n}"])


UNKNOWN = st.from_regex(r"[a-z_][a-z0-9_]{0,10}", fullmatch=True)


@FAST
@given(st.sampled_from(sorted(SECTIONS)), UNKNOWN, st.sampled_from(["1", "x", "[1, 2]", "{a: 1}", "null", "-3"]))
def test_unknown_key_at_any_depth_is_named(section, name, value):
    if name in SECTIONS[section].model_fields:
        return
    key = f"{section}.{name}".lstrip(".")
    with pytest.raises(ConfigError) as exc:
        load_config(None, [f"{key}={value}"])
    assert f"- {key}: unknown key" in str(exc.value)


@FAST
@given(st.sampled_from(sorted(SECTIONS)), UNKNOWN)
def test_unknown_key_in_a_file_is_named(tmp_path, section, name):
    if name in SECTIONS[section].model_fields:
        return
    key = f"{section}.{name}".lstrip(".")
    tree: dict = {}
    node = tree
    for part in key.split(".")[:-1]:
        node = node.setdefault(part, {})
    node[name] = 1
    p = tmp_path / "unknown.yaml"
    p.write_text(yaml.safe_dump(tree))
    with pytest.raises(ConfigError) as exc:
        load_config(p)
    assert f"- {key}: unknown key" in str(exc.value) and str(p) in str(exc.value)


# ---------------------------------------------------------------- YAML files

SCALARS = (st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
           | st.sampled_from(["rollout", "serve", "local", "external", "http://a:1/v1", "torch", "grpo"]))
DOCS = st.recursive(
    SCALARS,
    lambda kids: st.lists(kids, max_size=4)
    | st.dictionaries(st.sampled_from(ALL_KEYS + sorted({k.split(".")[-1] for k in ALL_KEYS})) | SCALARS,
                      kids, max_size=4),
    max_leaves=15)
# Documents shaped like the config: real section names, random contents.
SHAPED = st.fixed_dictionaries({}, optional={s: DOCS for s in sorted({k.split(".")[0] for k in ALL_KEYS})})


@FAST
@given(DOCS | SHAPED, st.lists(OVERRIDE, max_size=2))
def test_any_yaml_document_gives_a_config_or_a_config_error(tmp_path, doc, overrides):
    p = tmp_path / "random.yaml"
    p.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    outcome(lambda: load_config(p, overrides))


@FAST
@given(st.text(max_size=200) | st.lists(YAMLISH | st.sampled_from(["\n", ": ", "  ", "rollout:", "shards: "]),
                                        max_size=20).map("".join))
@example("iterations: 2020-13-45\n")
@example("rollout:\n  shards: " + "9" * 5000 + "\n")
@example("a: " + "[" * 5000)
@example("x: &a [*a]\n")
@example("env: {params: &p {a: *p}}\n")
def test_any_text_file_gives_a_config_or_a_config_error(tmp_path, text):
    p = tmp_path / "text.yaml"
    p.write_text(text, encoding="utf-8", errors="surrogatepass")
    outcome(lambda: load_config(p))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=200))
@example(b"\xff\xfe\x00i\x00t")                 # UTF-16: not UTF-8 text
def test_any_bytes_file_gives_a_config_or_a_config_error(tmp_path, blob):
    p = tmp_path / "bytes.yaml"
    p.write_bytes(blob)
    outcome(lambda: load_config(p))


def test_a_directory_or_missing_file_is_a_config_error(tmp_path):
    for p in (tmp_path, tmp_path / "missing.yaml"):
        assert isinstance(outcome(lambda: load_config(p)), ConfigError)


def test_local_yaml_with_every_numeric_key_overridden_by_its_own_value():
    cfg = load_config(Path(__file__).resolve().parents[2] / "configs" / "local.yaml")
    overrides = []
    for key, _, _ in NUMERIC:
        v = cfg
        for part in key.split("."):
            v = getattr(v, part)
        overrides.append(f"{key}={v!r}")
    again = load_config(Path(__file__).resolve().parents[2] / "configs" / "local.yaml", overrides)
    assert again == cfg

