"""Contrastive explanations ("why A, not B?"): the problem and the explainer."""
