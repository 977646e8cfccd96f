"""What the detection knows about networks: which addresses are privacy relays, in-flight or satellite providers,
corporate gateways, mobile carriers, hosting or VPN exits (:mod:`detection.networks.registry`), the shipped defaults
(``defaults.json``, each entry with its public source), and Apple's published Private Relay egress ranges
(:mod:`detection.networks.private_relay`). A network the registry does not know is neutral."""

from detection.networks.registry import (
    NetworkClass,
    NetworkEntry,
    NetworkRegistry,
    RegistryError,
    default_registry,
    load_registry_file,
)

__all__ = [
    "NetworkClass",
    "NetworkEntry",
    "NetworkRegistry",
    "RegistryError",
    "default_registry",
    "load_registry_file",
]
