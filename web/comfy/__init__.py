"""ComfyUI's HTTP and websocket API on ``gouache serve``, beside gouache's own (``docs/api.md``).

Scripts written for ComfyUI queue API-format prompts (``POST /prompt``), wait on ``/ws?clientId=``,
read ``/history`` and fetch images from ``/view``; here the prompt is read by the pack's ComfyUI
importer into a ``gouache/1`` workflow (ids kept), validated, and queued in gouache's one run queue,
so it runs, is listed and can be cancelled like any other run. The same security middleware guards
these routes as gouache's own (Host, Origin, token), and files are resolved by the same safe paths.
"""

from gouache.web.comfy.api import COMFY, ComfyApi

__all__ = ["COMFY", "ComfyApi"]
