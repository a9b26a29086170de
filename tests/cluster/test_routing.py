"""The routing rule, as a specification: affinity first, then a disk that has the model, else wait."""

from __future__ import annotations

from types import SimpleNamespace

from gouache.cluster.routing import Route, WorkerState, describe, missing, needs, raw_needs, route, schedule
from gouache.engine import Engine, Input, Node, Output, hookimpl
from gouache.engine.validate import validate
from gouache.engine.workflow import parse

A, B, C = ("checkpoints", "a"), ("checkpoints", "b"), ("checkpoints", "c")
STYLE = ("loras", "style")


def worker(name: str, loaded=(), on_disk=(A, B, STYLE), free: bool = True) -> WorkerState:
    return WorkerState(name, frozenset(loaded), frozenset(on_disk), free)


def test_a_run_goes_to_the_free_worker_already_holding_its_checkpoint():
    workers = [worker("w1", loaded=[B]), worker("w2", loaded=[A]), worker("w3")]
    assert route(frozenset({A}), workers) == Route("w2", "loaded")


def test_loras_count_too_the_worker_holding_more_of_what_the_run_needs_wins():
    workers = [worker("w1", loaded=[A]), worker("w2", loaded=[A, STYLE])]
    assert route(frozenset({A, STYLE}), workers) == Route("w2", "loaded")
    # Holding only part of it is no hit: the rest loads from disk.
    assert route(frozenset({A, STYLE}), workers[:1]) == Route("w1", "on_disk")


def test_without_a_holder_a_free_worker_with_it_on_disk_takes_it_disturbing_least():
    workers = [worker("w1", loaded=[B]), worker("w2"), worker("w3", on_disk=[B])]
    assert route(frozenset({A}), workers) == Route("w2", "on_disk")


def test_a_busy_holder_is_not_waited_for_when_another_worker_can_load_it():
    workers = [worker("w1", loaded=[A], free=False), worker("w2")]
    assert route(frozenset({A}), workers) == Route("w2", "on_disk")


def test_the_run_waits_when_only_busy_workers_have_the_model_and_is_missing_when_none_has():
    workers = [worker("w1", on_disk=[C], free=False), worker("w2", on_disk=[A])]
    assert route(frozenset({C}), workers) == Route(None, "wait")
    assert route(frozenset({("checkpoints", "z")}), workers) == Route(None, "missing")
    assert missing(frozenset({A, ("checkpoints", "z")}), workers) == [("checkpoints", "z")]
    assert describe(workers, "checkpoints") == "w1 (c); w2 (a)"


def test_ties_go_to_the_first_worker_and_a_run_needing_nothing_goes_anywhere():
    assert route(frozenset({A}), [worker("w1"), worker("w2")]) == Route("w1", "on_disk")
    assert route(frozenset(), [worker("w1", free=False), worker("w2", loaded=[A])]) == Route("w2", "loaded")


def test_schedule_takes_the_queue_in_order_without_letting_a_waiting_run_hold_it_up():
    workers = [worker("w1", loaded=[A], on_disk=[A]), worker("w2", on_disk=[B])]
    queue = [("r1", frozenset({C})), ("r2", frozenset({B})), ("r3", frozenset({A})), ("r4", frozenset({A}))]
    # r1 needs a model nobody has (it stays); r3 is a hit, so it goes first; r4 finds both workers taken.
    assert schedule(queue, workers) == [("r3", "w1"), ("r2", "w2")]


def test_a_run_whose_model_a_free_worker_holds_goes_before_older_runs_that_would_load():
    workers = [worker("w1", loaded=[B])]
    assert schedule([("r1", frozenset({A})), ("r2", frozenset({B}))], workers) == [("r2", "w1")]
    assert schedule([("r1", frozenset({A})), ("r2", frozenset({B}))], [worker("w1", loaded=[C])]) == [("r1", "w1")]


def test_a_worker_given_a_run_is_busy_for_the_runs_after_it():
    workers = [worker("w1", loaded=[A]), worker("w2")]
    assert schedule([("r1", frozenset({A})), ("r2", frozenset({A}))], workers) == [("r1", "w1"), ("r2", "w2")]


class Loader(Node):
    """Stands for CheckpointLoader and LoraLoader: a name chosen from a model folder."""

    type_name = "Loader"
    category = "routing"
    inputs = [Input("name", "STRING", choices_from="checkpoints"), Input("lora", "STRING", choices_from="loras",
                                                                            optional=True)]
    outputs = [Output("name", "STRING")]

    def run(self, ctx, name, lora=None):
        return {"name": name}


def test_a_run_needs_the_models_its_typed_in_model_inputs_name(tmp_path):
    pack = SimpleNamespace(gouache_register_nodes=hookimpl(lambda: [Loader]))
    registry = Engine(packs={"routing": pack}, entry_points=False, home=tmp_path / "home").registry
    raw = {"format": "gouache/1", "nodes": {"one": {"type": "Loader", "inputs": {"name": "a", "lora": "style"}},
                                             "two": {"type": "Loader", "inputs": {"name": "a"}}}}
    parsed = parse(raw)[0]
    assert raw_needs(parsed, registry) == {("one", "name"): A, ("one", "lora"): STYLE, ("two", "name"): A}
    valid, problems = validate(parsed, registry, {"checkpoints": ["a"], "loras": ["style"]}.__getitem__)
    assert problems == [] and needs(valid) == frozenset({A, STYLE})
