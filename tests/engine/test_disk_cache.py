"""The disk tier: outputs kept under the home folder for later processes, within a byte budget.

Every engine here is a fresh one on the same home, which is what a new process sees.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest
import toy_pack

from gouache.engine import CacheDevice, Engine, Input, Node, Output, OutputCache, cache_device, hookimpl, register_codec
from gouache.engine.disk_cache import DiskCache, Unstorable, decode_entry, encode_entry


class Handle:
    """Stands for a loaded model: it has no codec, so it can only live in memory."""

    def __init__(self, value: float) -> None:
        self.value = value


class Point:
    """A value type with a codec, as a pack registers one."""

    def __init__(self, x: float, y: float) -> None:
        self.x, self.y = x, y

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Point) and (self.x, self.y) == (other.x, other.y)


register_codec(Point, "test.point/1", lambda p: (p.x, p.y), lambda tree: Point(*tree))


class Load(Node):
    """A loader: its output is a handle."""

    type_name = "Load"
    category = "test"
    inputs = [Input("value", "FLOAT", default=1.0)]
    outputs = [Output("handle", "HANDLE")]
    runs = 0

    def run(self, ctx, value):
        Load.runs += 1
        return {"handle": Handle(value)}


class Use(Node):
    """Reads a handle: its outputs are plain data, stored even though its input is not."""

    type_name = "Use"
    category = "test"
    inputs = [Input("handle", "HANDLE"), Input("times", "FLOAT", default=2.0)]
    outputs = [Output("point", "POINT"), Output("mixed", "*")]
    runs = 0

    def run(self, ctx, handle, times):
        Use.runs += 1
        value = handle.value * times
        return {"point": Point(value, -value), "mixed": {"list": [1, 2.5, None], "tuple": (b"\x00\xff", "s")}}


class Write(Node):
    """An output node that writes a file and reports it, like SaveImage."""

    type_name = "Write"
    category = "test"
    output_node = True
    inputs = [Input("point", "POINT")]
    outputs = []
    runs = 0

    def run(self, ctx, point):
        Write.runs += 1
        path = ctx.settings.folder("output") / f"point_{Write.runs}.txt"
        path.write_text(f"{point.x},{point.y}")
        ctx.add_image("output", path)
        return {}


class DiskPack:
    @hookimpl
    def gouache_register_types(self):
        from gouache.engine import SocketType

        return [SocketType("HANDLE"), SocketType("POINT")]

    @hookimpl
    def gouache_register_nodes(self):
        return [Load, Use, Write]


WORKFLOW = {"format": "gouache/1", "nodes": {
    "load": {"type": "Load", "inputs": {"value": 3.0}},
    "use": {"type": "Use", "inputs": {"handle": {"node": "load", "output": "handle"}}},
    "write": {"type": "Write", "inputs": {"point": {"node": "use", "output": "point"}}},
}}


@pytest.fixture
def make_engine(tmp_path):
    Load.runs = Use.runs = Write.runs = 0

    def make(**options) -> Engine:
        return Engine(packs={"toy": toy_pack, "disk": DiskPack()}, entry_points=False, home=tmp_path / "home",
                      disk_cache=True, **options)

    return make


def test_a_new_engine_reuses_stored_outputs_and_reruns_only_what_has_no_codec(make_engine):
    first = make_engine().run(WORKFLOW)
    assert first.executed == ["load", "use", "write"] and first.from_disk == []
    second = make_engine().run(WORKFLOW)
    assert second.executed == ["load"]  # a handle is never stored: the loader runs again
    assert second.from_disk == ["use", "write"] and second.cached == ["use", "write"]
    assert second.outputs["use"] == first.outputs["use"] and second.images == first.images
    assert (Use.runs, Write.runs) == (1, 1)


def test_a_disk_hit_is_kept_in_memory_and_reported_from_memory_next(make_engine):
    make_engine().run(WORKFLOW)
    engine = make_engine()
    assert engine.run(WORKFLOW).from_disk == ["use", "write"]
    again = engine.run(WORKFLOW)
    assert again.executed == [] and again.from_disk == []


def test_a_node_whose_reported_file_is_gone_runs_again_from_memory_or_disk(make_engine, tmp_path):
    engine = make_engine()
    [image] = engine.run(WORKFLOW).images["write"]
    (tmp_path / "home" / "output" / image["path"]).unlink()
    assert engine.run(WORKFLOW).executed == ["write"]  # memory hit, file gone
    [image] = engine.run(WORKFLOW).images["write"]
    (tmp_path / "home" / "output" / image["path"]).unlink()
    result = make_engine().run(WORKFLOW)
    assert result.executed == ["load", "write"] and result.from_disk == ["use"]


def test_engines_leave_the_disk_tier_off_unless_asked(tmp_path):
    engine = Engine(packs={"toy": toy_pack}, entry_points=False, home=tmp_path)
    assert engine.cache.disk is None
    engine.run({"format": "gouache/1", "nodes": {"n": {"type": "Number", "inputs": {"value": 1.0}}}})
    assert not (tmp_path / "cache").exists()


def test_a_zero_disk_budget_turns_the_tier_off(make_engine, tmp_path):
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "config.json").write_text('{"disk_cache_bytes": 0}')
    assert make_engine().cache.disk is None


def test_damaged_entries_are_deleted_and_recomputed_never_raised(make_engine, tmp_path, caplog):
    make_engine().run(WORKFLOW)
    files = sorted((tmp_path / "home" / "cache" / "outputs").glob("*.entry"))
    assert len(files) == 2
    for index, path in enumerate(files):
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2] if index == 0 else data[:-1] + bytes([data[-1] ^ 1]))
    result = make_engine().run(WORKFLOW)
    assert result.ok and result.executed == ["load", "use", "write"] and result.from_disk == []
    assert "damaged" in caplog.text
    assert make_engine().run(WORKFLOW).from_disk == ["use", "write"]  # written again, whole


def test_an_entry_is_read_only_under_its_own_key_and_with_known_codecs(tmp_path):
    data = encode_entry("k1", {"p": Point(1, 2)}, {})
    assert decode_entry("k1", data) == ({"p": Point(1, 2)}, {})
    with pytest.raises(ValueError, match="another key"):
        decode_entry("k2", data)
    with pytest.raises(ValueError, match="magic"):
        decode_entry("k1", b"\x80\x04pickle")
    with pytest.raises(Unstorable):
        encode_entry("k", {"h": Handle(1)}, {})
    with pytest.raises(Unstorable):
        encode_entry("k", {"d": {1: "non-str key"}}, {})


def test_values_round_trip_with_their_types(tmp_path):
    value = {"t": (1, "a", None, True, 2.5, float("inf")), "l": [b"bytes", [Point(0, 1)]], "nested": {"x": {}}}
    outputs, ui = decode_entry("k", encode_entry("k", {"v": value}, {"images": [{"kind": "output", "path": "a"}]}))
    assert outputs == {"v": value} and ui == {"images": [{"kind": "output", "path": "a"}]}


def test_a_codec_tag_cannot_be_taken_by_another_decoder():
    with pytest.raises(ValueError, match="already registered"):
        register_codec(Handle, "test.point/1", lambda h: h.value, lambda tree: Handle(tree))


def test_least_recently_used_entries_leave_first_past_the_byte_budget(tmp_path):
    disk = DiskCache(tmp_path, budget_bytes=11_000)  # three entries of about 3,150 bytes fit, not four
    blob = {"x": bytes(3000)}
    for key in "abc":
        assert disk.put(key, blob, {})
    old = time.time() - 100
    for age, key in enumerate("abc"):
        os.utime(disk.path(key), (old + age, old + age))
    assert disk.get("a") is not None  # a hit makes "a" the most recent
    assert disk.put("d", blob, {})
    assert disk.get("b") is None and all(disk.get(key) for key in "acd")
    assert disk.used_bytes <= 11_000
    assert not disk.put("huge", {"x": bytes(20_000)}, {})  # larger than the whole budget: not kept


def test_stale_temporary_files_of_dead_writers_are_removed(tmp_path):
    disk = DiskCache(tmp_path, budget_bytes=1000)
    stale, fresh = tmp_path / ".dead.1.x.tmp", tmp_path / ".live.2.y.tmp"
    stale.write_bytes(b"partial")
    fresh.write_bytes(b"being written")
    os.utime(stale, (0, 0))
    assert disk.used_bytes == 0
    assert not stale.exists() and fresh.exists()


def test_writers_sharing_a_folder_never_leave_a_torn_entry(tmp_path):
    """Threads stand in for processes here: every write is a rename of a whole temporary file."""
    disks = [DiskCache(tmp_path, budget_bytes=10**8) for _ in range(4)]
    errors = []

    def hammer(disk: DiskCache, salt: int) -> None:
        for round_ in range(30):
            disk.put("shared", {"x": bytes([salt]) * (1000 + round_)}, {})
            found = disk.get("shared")
            if found is None or len(set(found[0]["x"])) != 1:
                errors.append(found)

    threads = [threading.Thread(target=hammer, args=(disk, index)) for index, disk in enumerate(disks)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and list(tmp_path.glob("*.tmp")) == []


def test_pack_versions_salt_the_file_names(tmp_path):
    outputs = {"x": 1}
    DiskCache(tmp_path, 10**6, salt="pack 1.0").put("k", outputs, {})
    assert DiskCache(tmp_path, 10**6, salt="pack 1.1").get("k") is None
    assert DiskCache(tmp_path, 10**6, salt="pack 1.0").get("k")[0] == outputs


class OnDevice:
    """A value a pack says lives on a GPU with 8,000 bytes of memory."""

    def __init__(self, nbytes: int) -> None:
        self.nbytes = nbytes


@cache_device.register(OnDevice)
def _(value: OnDevice) -> CacheDevice:
    return CacheDevice("gpu:0", total_bytes=8000)


def test_values_on_a_device_count_against_that_device_s_budget():
    cache = OutputCache(budget_bytes=10**6)
    for key in "abc":
        cache.put(key, {"x": OnDevice(300)}, {})  # about 480 bytes each; default share: 1/8 of 8000 bytes
    assert "a" not in cache and "b" in cache and "c" in cache
    cache.put("ram", {"x": bytes(5000)}, {})
    assert cache.used_by_device()["gpu:0"] <= 1000 and cache.used_bytes >= 5000
    explicit = OutputCache(budget_bytes=10**6, device_budget_bytes=10_000)
    for key in "abc":
        explicit.put(key, {"x": OnDevice(300)}, {})
    assert all(key in explicit for key in "abc")


def test_a_duck_typed_gpu_value_counts_against_its_device(tmp_path):
    class Device:
        type = "cuda"

        def __str__(self) -> str:
            return "cuda:0"

    class Tensor:
        device = Device()
        nbytes = 10

    assert cache_device({"x": [Tensor()]}) == CacheDevice("cuda:0")
    assert cache_device({"x": bytes(3)}) is None


def test_an_unwritable_cache_folder_only_skips_the_disk_tier(make_engine, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    (home / "cache").write_text("a file where the folder should be")
    result = make_engine().run(WORKFLOW)
    assert result.ok and result.executed == ["load", "use", "write"]


def test_disk_cache_files_live_under_the_home(make_engine, tmp_path):
    engine = make_engine()
    engine.run(WORKFLOW)
    assert engine.cache.disk.folder == Path(tmp_path / "home" / "cache" / "outputs").resolve()


class Fragile:
    """A value whose codec fails while encoding."""


def _refuse(value: Fragile) -> None:
    raise RuntimeError("cannot encode this one")


register_codec(Fragile, "test.fragile/1", _refuse, lambda tree: Fragile())


def test_a_codec_that_fails_to_encode_only_keeps_the_entry_off_disk(tmp_path, caplog):
    disk = DiskCache(tmp_path, budget_bytes=10**6)
    assert not disk.put("k", {"x": Fragile()}, {}) and disk.get("k") is None
    assert "cannot encode" in caplog.text
