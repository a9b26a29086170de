"""The domain-free core of gouache: node declaration, registry, workflows, executor, cache, plugins.

It imports no torch: everything here runs and is tested with toy nodes.
"""

from gouache.engine.api import Engine
from gouache.engine.cache import CacheDevice, OutputCache, cache_device, cache_size
from gouache.engine.disk_cache import Unstorable, register_codec
from gouache.engine.context import Interrupted, RunContext, running_context
from gouache.engine.events import Event
from gouache.engine.executor import RunResult
from gouache.engine.hookspecs import hookimpl
from gouache.engine.importers import PngChunks, WorkflowImporter
from gouache.engine.model_index import ModelEntry, ModelFolder
from gouache.engine.declaration import CachePolicy, Input, Node, NodeInfo, Output
from gouache.engine.packs import PackReport, WebExtension
from gouache.engine.problems import InputError, NodeError, Problem, WorkflowInvalid
from gouache.engine.registry import DefinitionError, Registry
from gouache.engine.settings import Settings
from gouache.engine.sockets import ANY, SocketType
from gouache.engine.validate import ValidWorkflow
from gouache.engine.workflow import Workflow

__all__ = [
    "ANY", "CacheDevice", "CachePolicy", "DefinitionError", "Engine", "Event", "Input", "InputError", "Interrupted",
    "ModelEntry",
    "ModelFolder", "Node", "NodeError", "NodeInfo", "Output", "OutputCache", "PackReport", "Problem",
    "Registry", "RunContext", "RunResult", "Settings", "SocketType", "ValidWorkflow", "WebExtension",
    "Unstorable", "Workflow", "WorkflowImporter", "WorkflowInvalid", "PngChunks", "cache_device", "cache_size", "hookimpl", "register_codec",
    "running_context",
]
