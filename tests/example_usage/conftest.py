# The Django project runs in its own pytest, with its own settings (test_plugin.py).
collect_ignore = ["django_project"]
