"""A small user project, tested the way its users would with celery_svcjwt.testing.

* ``shop/``: a Celery app that calls install(), and tasks that call an inventory API
  through ``self.api``; tested in test_shop_tasks.py (pytest, the ``svcjwt_mock``
  fixture), test_shop_unittest.py (unittest, ``mock_api()``) and test_shop_worker.py
  (in-process workers).
* ``django_project/``: a Django project whose tasks write the API's answers into the
  database, tested with django.test.TestCase and pytest-django; test_plugin.py runs it
  (and a project with no conftest at all) in a fresh pytest, as installed users get it.
"""
