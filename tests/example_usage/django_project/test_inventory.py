"""The Django project's tasks, tested with Django's TestCase and with pytest-django."""

import pytest
from django.test import TestCase
from inventory.models import Item
from inventory.tasks import import_item

from celery_svcjwt.testing import mock_api


class ImportItemTests(TestCase):
    def setUp(self):
        self.api = mock_api()
        self.api.start()
        self.addCleanup(self.api.stop)

    def test_import_item_saves_it(self):
        self.api.get("items/5/", json={"id": 5, "name": "hinge", "stock": 40})

        import_item.delay(5)  # CELERY_TASK_ALWAYS_EAGER

        item = Item.objects.get(pk=5)
        self.assertEqual((item.name, item.stock), ("hinge", 40))
        request = self.api.calls[0].request
        self.assertEqual(request.url, "https://inventory.example.com/v2/items/5/")  # CELERY_SVCJWT_API_URL
        self.assertEqual(request.headers["Authorization"], f"JWT {self.api.access_token}")  # SIMPLE_JWT


class DecoratedTests(TestCase):
    @mock_api()
    def test_with_the_decorator(self, api):
        api.get("items/6/", json={"id": 6, "name": "latch", "stock": 3})
        import_item.delay(6)
        self.assertEqual(Item.objects.get(pk=6).name, "latch")


@pytest.mark.django_db
def test_with_pytest_django(svcjwt_mock):
    svcjwt_mock.get("items/7/", json={"id": 7, "name": "hasp", "stock": 9})

    import_item.delay(7)

    assert Item.objects.get(pk=7).stock == 9
    assert svcjwt_mock.logins == 1
