"""sdrest: a self-hosted image and video generation server over stable-diffusion.cpp."""

__version__ = "0.1.0"
