"""Whatever arrives, from a file or from Python, ends as problems: never another exception.

Each regression below is an input that once crashed ``Engine.check`` or slipped through validation.
"""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import toy_pack
from gouache.engine import Engine
from gouache.engine.jsonio import MAX_DEPTH

MESSAGE_LIMIT = 1_000
GOOD = {"format": "gouache/1", "nodes": {
    "a": {"type": "Number", "inputs": {"value": 1.5}},
    "t": {"type": "Record", "inputs": {"value": {"node": "a", "output": "value"}}},
}}


def problems_of(engine: Engine, source) -> list:
    valid, problems = engine.check(source)
    assert valid is None and problems
    for problem in problems:
        assert problem.code and problem.message
        assert len(problem.message) < MESSAGE_LIMIT, problem.message[:200]
        json.dumps(problem.to_json())
    return problems


def png_with(*chunks: tuple[bytes, bytes]) -> bytes:
    """A PNG signature followed by the given (type, body) chunks; the checker never decodes pixels."""
    out = b"\x89PNG\r\n\x1a\n"
    for kind, body in chunks:
        out += struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    return out


def test_json_nested_past_the_limit_is_a_problem(engine, tmp_path: Path):
    path = tmp_path / "deep.json"
    path.write_text('{"format": "gouache/1", "nodes": {"a": {"type": "Number", "inputs": {"value": '
                    + "[" * 5000 + "]" * 5000 + "}}}}")
    [problem] = problems_of(engine, path)
    assert problem.code == "unreadable_workflow" and f"{MAX_DEPTH} levels" in problem.message


def test_a_python_dict_nested_5000_deep_is_a_problem(engine):
    deep: dict = {}
    inner = deep
    for _ in range(5000):
        inner["x"] = {}
        inner = inner["x"]
    workflow = {"format": "gouache/1", "nodes": {"a": {"type": "Number", "inputs": {"value": deep}}}}
    [problem] = problems_of(engine, workflow)
    assert problem.code == "too_deep"


@pytest.mark.parametrize("body, says", [
    (b"workflow\0", "cut short"),                                   # iTXt with nothing after the keyword
    (b"workflow\0\1\0\0\0{not zlib}", "damaged"),                   # flagged compressed, but is not
    (b"workflow\0\0\0\0\0\xff\xfe", "damaged"),                      # not UTF-8
])
def test_a_damaged_png_text_chunk_is_a_problem_naming_the_chunk(engine, tmp_path: Path, body, says):
    path = tmp_path / "damaged.png"
    path.write_bytes(png_with((b"iTXt", body)))
    [problem] = problems_of(engine, path)
    assert problem.code == "unreadable_workflow" and "iTXt chunk" in problem.message and says in problem.message


def test_a_compressed_itxt_workflow_is_read(engine, tmp_path: Path):
    path = tmp_path / "ok.png"
    path.write_bytes(png_with((b"iTXt", b"workflow\0\1\0\0\0" + zlib.compress(json.dumps(GOOD).encode()))))
    valid, problems = engine.check(path)
    assert problems == [] and valid is not None


def test_an_integer_beyond_a_float_in_a_float_input_is_a_problem(engine):
    workflow = json.loads(json.dumps(GOOD))
    workflow["nodes"]["a"]["inputs"]["value"] = 10**400
    [problem] = problems_of(engine, workflow)
    assert (problem.node, problem.input, problem.code) == ("a", "value", "wrong_value_type")
    assert "finite number" in problem.message


def test_integers_past_pythons_digit_limit_are_problems(engine, tmp_path: Path):
    path = tmp_path / "digits.json"
    path.write_text(json.dumps(GOOD).replace("1.5", "9" * 5000))
    [problem] = problems_of(engine, path)
    assert "5000 digits" in problem.message
    workflow = json.loads(json.dumps(GOOD))
    workflow["nodes"]["a"]["inputs"]["value"] = "x"
    workflow["nodes"]["b"] = {"type": "Int", "inputs": {"value": 10**5000}}
    problems = problems_of(engine, workflow)
    assert {(p.node, p.code) for p in problems} == {("a", "wrong_value_type"), ("b", "out_of_range")}


def test_a_repeated_key_is_an_error_not_a_silent_winner(engine, tmp_path: Path):
    path = tmp_path / "twice.json"
    path.write_text(json.dumps(GOOD)[:-1] + ', "nodes": {}}')
    [problem] = problems_of(engine, path)
    assert "the key 'nodes' appears twice" in problem.message


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_not_json(engine, tmp_path: Path, constant):
    path = tmp_path / "nan.json"
    path.write_text(json.dumps(GOOD).replace("1.5", constant))
    [problem] = problems_of(engine, path)
    assert "is not a JSON value" in problem.message


@pytest.mark.parametrize("text, code", [("a\ud800b", "invalid_text"), ("a\0b", "invalid_text"),
                                         ("x" * 200_000, "too_long")])
def test_text_that_cannot_be_used_is_refused_at_validation(engine, text, code):
    workflow = {"format": "gouache/1", "nodes": {"s": {"type": "Scale", "inputs": {
        "x": {"node": "a", "output": "value"}, "label": text}}, "a": {"type": "Number"}}}
    [problem] = problems_of(engine, workflow)
    assert (problem.node, problem.input, problem.code) == ("s", "label", code)


def test_a_huge_bad_value_is_quoted_cut_short(engine):
    workflow = json.loads(json.dumps(GOOD))
    workflow["nodes"]["a"]["inputs"]["value"] = "v" * 1_000_000
    workflow["nodes"]["z" * 100_000] = {"type": "N" * 100_000}
    problems = problems_of(engine, workflow)
    assert len(problems) == 2 and all("characters)" in p.message for p in problems)


def test_a_typo_in_a_node_type_suggests_the_type_and_reports_nothing_else(engine):
    workflow = json.loads(json.dumps(GOOD))
    workflow["nodes"]["a"]["type"] = "Numbr"
    [problem] = problems_of(engine, workflow)
    assert problem.code == "unknown_node_type" and "did you mean 'Number'?" in problem.message


valid_text = json.dumps(GOOD)


@st.composite
def damaged_files(draw) -> bytes:
    """The good workflow as JSON or in a PNG, with bytes flipped, cut, duplicated or inserted."""
    data = bytearray(valid_text.encode())
    if draw(st.booleans()):
        body = zlib.compress(bytes(data)) if draw(st.booleans()) else bytes(data)
        flag = b"\1" if body[:1] == b"x" else b"\0"
        data = bytearray(png_with((b"iTXt", b"workflow\0" + flag + b"\0\0\0" + body)))
    for _ in range(draw(st.integers(1, 6))):
        if not data:
            break
        at = draw(st.integers(0, len(data) - 1))
        kind = draw(st.integers(0, 3))
        if kind == 0:
            data[at] = draw(st.integers(0, 255))
        elif kind == 1:
            del data[at:at + draw(st.integers(1, 40))]
        elif kind == 2:
            data[at:at] = draw(st.sampled_from([b"[", b"{", b"\"", b"9" * 400, b"NaN", b"\\ud800", b"\0",
                                                 b',"nodes":{}', b"1e999", b"[" * 200]))
        else:
            data[at:at] = data[at:at + draw(st.integers(1, 60))]
    return bytes(data)


@settings(max_examples=1500, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=damaged_files())
def test_damaged_files_give_problems_never_a_crash(tmp_path_factory, data):
    folder = tmp_path_factory.mktemp("fuzz", numbered=True)
    engine = Engine(packs={"toy": toy_pack}, entry_points=False, home=folder / "home")
    path = folder / ("w.png" if data[:4] == b"\x89PNG" else "w.json")
    path.write_bytes(data)
    valid, problems = engine.check(path)
    if valid is None:
        assert problems
        for problem in problems:
            assert problem.code and len(problem.message) < MESSAGE_LIMIT
            json.dumps(problem.to_json())
    else:
        assert engine.run(valid).status in ("succeeded", "failed")


@pytest.mark.parametrize("container", [list, tuple, dict])
def test_nesting_exactly_at_the_limit_passes_and_one_level_more_is_refused(container):
    from gouache.engine import jsonio

    def nested(levels: int):
        value: object = 1
        for _ in range(levels):
            value = {"x": value} if container is dict else container([0, value])
        return value

    jsonio.check_depth(nested(MAX_DEPTH))
    with pytest.raises(jsonio.JsonError, match=f"deeper than the {MAX_DEPTH} levels"):
        jsonio.check_depth(nested(MAX_DEPTH + 1))
    assert jsonio.loads(jsonio.dumps(nested(MAX_DEPTH))) is not None
    with pytest.raises(jsonio.JsonError, match=f"deeper than the {MAX_DEPTH} levels"):
        jsonio.loads(jsonio.dumps(nested(MAX_DEPTH + 1)))
    cyclic: dict = {}
    cyclic["self"] = cyclic  # a Python value that refers to itself is refused, not walked forever
    with pytest.raises(jsonio.JsonError):
        jsonio.check_depth(cyclic)
