"""The handler fixtures (environment, path importer, fake context) serve the end-to-end tests too."""

from tests.handlers.conftest import handler_env, lambda_context, load_handler  # noqa: F401
