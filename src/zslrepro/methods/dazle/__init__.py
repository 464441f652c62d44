"""DAZLE (Huynh & Elhamifar, CVPR 2020), as one package: ``model.py`` (the model; no I/O) and ``method_dazle.yaml`` (the
schema of its config's ``model`` and ``loss`` sections). Nothing outside this folder names it.

Import-free: the catalog reads the package while the workflow parses, before anything imports torch.
"""
