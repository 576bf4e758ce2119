"""lettabot's Matrix adapter (mautrix). Entry point: :func:`create_adapter`."""
