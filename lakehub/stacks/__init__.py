"""The templates: a troposphere builder, names, shared parameters, and one module per template.

Each module's `build_*` returns a `troposphere.Template`; `lakehub.release.build` renders them all.
Nothing here imports `lakehub.checks`: the checks read the templates, the stacks do not read the checks.
"""
