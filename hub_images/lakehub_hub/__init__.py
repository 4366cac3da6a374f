"""Hub-side code installed in the hub image (spawners, helpers)."""
