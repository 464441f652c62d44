"""SGMA (Zhu et al., NeurIPS 2019), as one package: ``model.py`` (the model; no I/O) and ``method_sgma.yaml`` (the
schema of its config's ``model`` and ``loss`` sections), ``channel_groups.py`` (the pipeline step that makes the channel groups its
training reads). Nothing outside this folder names it.

Import-free: the catalog reads the package while the workflow parses, before anything imports torch.
"""
