"""The quickstart's projects (docs/quickstart.rst includes these files); tests/integration/test_quickstart.py runs them."""
