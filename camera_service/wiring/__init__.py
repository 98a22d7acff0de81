"""Package-private helpers of the composition root: each module builds, registers or runs one
concern of :class:`camera_service.app.Application`. Only ``app.py`` imports them; the order
in which components are built, started and stopped stays readable there."""
