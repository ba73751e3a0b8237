"""Contrastive explanations ("why A, not B?"): the problem and the explainer.

``problem`` (``ContrastSet``, the method and its conventions), ``explain`` (``explain_contrast(s)``:
checks, restarts, answers), its steps ``fit`` (``z0``), ``solve`` (one batched run) and
``certificate`` (the independent check), and the result ``explanation``
(``ContrastiveExplanation``).
"""
