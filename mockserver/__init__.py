"""An offline twin of the ImagePipeline Stable Diffusion 3.5 API.

``create_app`` (the Flask app factory) is imported lazily so that the core modules stay usable,
and importable, without Flask.
"""

from .backend import MockBackend
from .config import MockConfig, load_profile

__all__ = ["MockBackend", "MockConfig", "create_app", "load_profile", "serve"]


def __getattr__(name: str):
    if name == "create_app":
        from .http import create_app

        return create_app
    if name == "serve":
        from .server import serve

        return serve
    raise AttributeError(name)
