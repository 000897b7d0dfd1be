"""The s1 recipe in miniature on a CPU (``s1kit demo``)."""
