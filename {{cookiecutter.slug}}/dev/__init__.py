"""Development tools, never part of the service: not in the wheel, not in the image."""
