"""Service pieces of the mount daemon: systemd readiness, the control socket, status."""
