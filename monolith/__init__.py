"""monolith: a single-box web service that scales out by changing URLs.

The public API is small on purpose: build the app with :func:`monolith.app.create_app`,
read settings with :func:`monolith.config.load_settings`.
"""

__version__ = "0.1.0"
