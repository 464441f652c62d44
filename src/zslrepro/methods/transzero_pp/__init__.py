"""TransZero++ (Chen et al., TPAMI 2023), as one package: ``model.py`` (the model; no I/O),
``method_transzero_pp.yaml`` (the schema of its config's ``model`` and ``loss`` sections,
``x-releases``) and ``release.py`` (the authors' released models as ours, with diagnostics).
Nothing outside this folder names it.

Import-free: the catalog reads the package while the workflow parses, before anything imports torch.
"""
