"""InfoSAM: relation module, matrix-based Rényi losses, and the registered ``infosam`` distiller."""

from .infosam import InfoSAM, InfoSAMOptions

__all__ = ["InfoSAM", "InfoSAMOptions"]
