"""The Volume API stubs, generated from proto/ at build time (setup.py)."""
