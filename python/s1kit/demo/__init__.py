"""The s1 recipe in miniature on a CPU (``s1kit demo``).

Where each concern lives: ``tasks.py`` the synthetic reasoning tasks and ``tokenizer.py`` their
character-level tokenizer; ``pipeline.py`` the stages (data, curate, model, train, eval, report), each
through s1kit's own CLI, with ``deterministic.py`` running them bit-for-bit reproducibly; ``scaling.py``
Wilson intervals and the s1-layout figure; ``report.py`` the report page; ``cli.py`` ``s1kit demo``.
"""
