"""The embedded default model `gouache-tiny`: its weights (`weights/`) and model card ship here.

Nothing here is imported at run time: the model is found as files (`gouache.nodes.folders`). The
code that trained it lives outside the package, in the repository's `training/` folder.
"""
