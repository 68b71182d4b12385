"""eventmart: event logs in, time-bucketed marts out."""

from .errors import InputError, ProjectError, UserError
from .project import Project

__all__ = ["InputError", "Project", "ProjectError", "UserError"]
__version__ = "0.1.0"
