"""lettabot's Matrix adapter (mautrix). Entry point: :func:`create_adapter`."""

from lettabot_matrix.adapter import MatrixAdapter, MatrixAdapterError, create_adapter
from lettabot_matrix.settings import MatrixConfig, MatrixSettings

__all__ = ["MatrixAdapter", "MatrixAdapterError", "MatrixConfig", "MatrixSettings",
           "create_adapter"]
