"""The samplers: the protocol and registry (``base``), the shared seed phase (``seeds``), the
paper's walk (``walk``), the joint solve (``joint``), the covering walk (``cover``) and adaptive multilevel splitting
(``smc``).

Importing this package registers the built-in methods; baselines and users' samplers register
with ``register_sampler``.
"""
from .base import (SAMPLERS, NoOptions, Sampler, Seeds, check_keys, make_config, register_sampler,
                   sampler_class)
from .cover import Cover, CoverConfig
from .joint import Joint, JointConfig
from .seeds import SeedConfig, SeedPhase
from .smc import SMC, SMCConfig
from .walk import Walk, WalkConfig

for _cls in (Cover, Walk, Joint, SMC):
    register_sampler(_cls)

__all__ = ["SAMPLERS", "NoOptions", "Sampler", "Seeds", "check_keys", "make_config", "register_sampler",
           "sampler_class", "Cover", "CoverConfig", "Joint", "JointConfig", "SeedConfig", "SeedPhase",
           "Walk", "WalkConfig", "SMC", "SMCConfig"]
